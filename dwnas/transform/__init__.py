"""Deep-to-shallow transform: BN folding, block merging, verification, torch.export / ONNX export.

See docs/transform.md. Names are imported lazily so that ``dwnas --help`` does not import torch.
"""

from dwnas.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "dwnas.transform.network": ("transform", "fold_deep", "to_deploy", "count_arch"),
    "dwnas.transform.fuse": ("fuse_conv_bn", "merged_kernel_bias", "merge_block", "deploy_block"),
    "dwnas.transform.verification": ("VerifyReport", "randomize_bn_", "verify", "verify_transform"),
    "dwnas.transform.export": ("export_program", "export_onnx", "verify_file"),
    "dwnas.transform.deploy": ("export_network", "deploy_forms", "fold_bn"),
})
