"""benign_attention: the package behind the book *Benign overfitting in token selection of attention*.

The paper: K. Sakamoto and I. Sato, ICML 2025 (arXiv:2409.17625).
"""
__version__ = "0.1.0"
