"""scegg: a reproducible companion to SC-EGG (IJCAI-22), built from the notebooks in nbs/."""
__version__ = "0.1.0"
