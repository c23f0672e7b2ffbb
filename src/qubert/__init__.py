"""qubert: BERT-family encoders with variational quantum (or classical) classification heads.

Importing ``qubert`` is cheap: torch is the only heavy dependency loaded here; transformers,
PennyLane, Qiskit and Ray are imported only by the modules that need them.

Example:
    >>> import torch
    >>> from qubert import QuantumHead
    >>> head = QuantumHead(in_features=384, n_classes=2, n_qubits=4, n_layers=2)
    >>> head(torch.randn(3, 384)).shape
    torch.Size([3, 2])
"""

from qubert.heads import LinearHead, MLPHead, QuantumHead, matched_mlp_head
from qubert.quantum import Circuit

__version__ = "0.1.0"
__all__ = ["Circuit", "LinearHead", "MLPHead", "QuantumHead", "matched_mlp_head", "__version__"]
