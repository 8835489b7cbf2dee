"""KFP lightweight components: one thin file per pipeline stage, each calling one divtune function.

Every component runs in an image named by ``configs/images.yaml`` (which already contains
divtune), so ``install_kfp_package=False`` and the function bodies just import divtune.
"""
