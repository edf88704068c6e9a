"""Stage 4 -- the dataset: graded samples become a Hugging Face dataset folder.

``notebook`` counts the error notebook and assembles the configs, ``pairs`` makes the preference
pairs, ``shards`` writes Hub-style Parquet shards, ``card`` the dataset card, ``publish`` pushes the
folder to the Hub.
"""
