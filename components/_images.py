"""``base_image`` for every component, from the one images config."""

from divtune.config import load_images

_IMAGES = load_images()
TRAINER_IMAGE = _IMAGES.ref("trainer")
EVALUATOR_IMAGE = _IMAGES.ref("evaluator")
SERVER_IMAGE = _IMAGES.ref("server")
