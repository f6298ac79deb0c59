"""Deep-to-shallow transform: BN folding, block merging, verification, torch.export / ONNX export.

See docs/transform.md. Names are imported lazily so that ``dwnas --help`` does not import torch.
"""

from dwnas.lazy import lazy_attributes

_EXPORTS = {
    "transform": "dwnas.transform.network",
    "fold_deep": "dwnas.transform.network",
    "to_deploy": "dwnas.transform.network",
    "count_arch": "dwnas.transform.network",
    "fuse_conv_bn": "dwnas.transform.fuse",
    "merged_kernel_bias": "dwnas.transform.fuse",
    "merge_block": "dwnas.transform.fuse",
    "deploy_block": "dwnas.transform.fuse",
    "VerifyReport": "dwnas.transform.verification",
    "randomize_bn_": "dwnas.transform.verification",
    "verify": "dwnas.transform.verification",
    "verify_transform": "dwnas.transform.verification",
    "export_program": "dwnas.transform.export",
    "export_onnx": "dwnas.transform.export",
    "verify_file": "dwnas.transform.export",
    "export_network": "dwnas.transform.deploy",
    "deploy_forms": "dwnas.transform.deploy",
    "fold_bn": "dwnas.transform.deploy",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
