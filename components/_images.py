"""``base_image`` for every component, from the one images config.

``configs/images.yaml`` names the registry and tag; ``DIVTUNE_REGISTRY`` and ``DIVTUNE_IMAGE_TAG`` override them (the
Makefile's ``REGISTRY`` / ``TAG``: ``make images`` builds under that registry and ``make compile`` then names the
same refs, so a compiled spec points at what was built and pushed).  Read once, when the components are imported.
"""

import dataclasses
import os

from divtune.config import load_images

_IMAGES = load_images()
_IMAGES = dataclasses.replace(_IMAGES, registry=os.environ.get("DIVTUNE_REGISTRY") or _IMAGES.registry,
                              tag=os.environ.get("DIVTUNE_IMAGE_TAG") or _IMAGES.tag)
TRAINER_IMAGE = _IMAGES.ref("trainer")
EVALUATOR_IMAGE = _IMAGES.ref("evaluator")
SERVER_IMAGE = _IMAGES.ref("server")
