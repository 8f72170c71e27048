"""lima-align: LIMA (Less Is More for Alignment) end to end.

Curate a small, diverse alignment set, fine-tune a base model with the LIMA recipe, generate with the paper's
sampling and evaluate against baselines. See ../README.md for the commands.
"""

__version__ = "0.1.0"
