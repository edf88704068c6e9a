"""Stage 4 -- the dataset: graded samples become a Hugging Face dataset folder.

``notebook`` counts the error notebook, ``assemble`` writes the configs (it is the ``ap2o-build
notebook`` stage), ``pairs`` makes the preference pairs, ``conversational`` turns a chat-format
dataset's text into TRL's message lists and back, ``shards`` writes Hub-style Parquet shards,
``card`` the dataset card, ``publish`` pushes the folder to the Hub.
"""
