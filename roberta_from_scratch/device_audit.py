"""The device audit (``RFS_DEVICE=audit``): placeholder, written next."""


def activate() -> None:
    raise NotImplementedError
