"""People in the loop: a web app to play PastaT2I with real raters, and the paper's human evaluation.

``pasta serve`` (:mod:`pasta_app.server`) serves sessions in which a rater
enters a request, sees each turn's slate, picks a column and, from turn 2 on,
says whether the new images are Better, Same or Worse than the last turn's.
Every turn is appended to the data folder in the project's preference-data
format (:mod:`pasta_app.records`), so ``pasta train-user-model --data DIR``
trains on it, and ``pasta human-eval-report DIR`` (:mod:`pasta_app.report`)
gives the paper's table. Needs ``pip install 'pasta-t2i[serve]'``.
"""
