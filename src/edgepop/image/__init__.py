"""The edgepop Debian image: one package list, built with mmdebstrap, imported into podman for the lab.

Public entry points are re-exported here so the CLI and the lab import one module.
"""

from edgepop.image.build import (
    ImageBuildError,
    build_inputs,
    build_rootfs,
    default_tag,
    import_container_image,
)
from edgepop.image.container import podman_run_argv
from edgepop.image.packages import FLAVOURS, Flavour, package_list

__all__ = [
    "FLAVOURS",
    "Flavour",
    "ImageBuildError",
    "build_inputs",
    "build_rootfs",
    "default_tag",
    "import_container_image",
    "package_list",
    "podman_run_argv",
]
