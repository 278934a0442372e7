"""serac: streaming transducer ASR and ASR fairness recipes."""

__version__ = "0.1.0"
