from __future__ import annotations

from vmdr.model.errors import PortInUse, VmdrError


def test_error_renders_code_cause_and_fix() -> None:
    err = PortInUse(port=5353, service="dns")
    assert err.code == "VMDR-E0103"
    assert err.message == "port 5353 on 127.0.0.1 is already in use (wanted by dns)"
    assert "Free the port" in err.remedy
    assert str(err).startswith("VMDR-E0103: port 5353")
    assert err.to_dict() == {"code": err.code, "message": err.message, "fix": err.remedy}


def test_every_error_code_is_unique() -> None:
    seen: dict[str, str] = {}

    def walk(cls: type[VmdrError]) -> None:
        for sub in cls.__subclasses__():
            assert sub.code not in seen, f"{sub.__name__} reuses {sub.code} of {seen.get(sub.code)}"
            seen[sub.code] = sub.__name__
            walk(sub)

    import importlib
    import pkgutil

    import vmdr

    for module in pkgutil.walk_packages(vmdr.__path__, "vmdr."):  # every error class defined
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    walk(VmdrError)
    assert len(seen) >= 5
