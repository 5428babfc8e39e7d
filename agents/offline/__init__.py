"""Offline-RL agents with weights, on d3rlpy (imported only when used: ``pip install 'pasta-t2i[offline]'``).

``agents.offline.iql``: PASTA's value-based agent, implicit Q-learning with
the decomposed slate value ``q(h, P) = mean_{p in P} f(h, p)``.
"""
