"""The settings model and everything derived from it without Pulumi: the validated stack settings
(settings.py, loaded and cross-checked by loading.py), the values derived from them (tuning.py), image
references and the facts of the images (images.py), and where each service listens and finds its
files (topology.py). It imports nothing else of this project: configs/ renders files from it,
components/ builds resources from both, and the program and tools sit on top."""
