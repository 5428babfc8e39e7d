"""The outside world of PastaT2I, one sub-package per part.

=================== ===========================================================
``text``            the phrase vocabulary, structured prompts, text encoders
``candidates``      candidate generators (the prompt expansions of each turn)
``images``          text-to-image models (images as embeddings)
``users``           the user-model interface, the EM-trained model, EM training,
                    its evaluation and checkpoint loading
``preferences``     the preference-data format and adapters for public datasets
=================== ===========================================================

Shared by all of them: ``errors`` (the exception hierarchy), ``atomic`` and
``files`` (the rules for writing and reading files), ``build_assets`` (rebuilds
the shipped embedding tables). Nothing here imports ``pasta_env`` or ``agents``.
"""
