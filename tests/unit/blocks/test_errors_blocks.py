from __future__ import annotations

import pickle

from vmdr.blocks import errors
from vmdr.blocks.errors import DisksDiffer, OperationCancelled, rebuild_error
from vmdr.model.errors import VmdrError


def test_codes_are_in_area_02_unique_and_documented() -> None:
    classes = [
        getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
    ]
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(code.startswith("VMDR-E02") for code in codes)
    for cls in classes:
        assert issubclass(cls, VmdrError)
        assert cls.code in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


def test_mismatch_and_cancel_have_their_own_exit_codes() -> None:
    assert DisksDiffer.exit_code == 4
    assert OperationCancelled.exit_code == 130
    err = DisksDiffer(a="x.img", b="y.img", detail="3 ranges")
    assert "vmdr disk resync x.img y.img" in err.remedy


def test_errors_cross_process_boundaries_by_fields() -> None:
    err = OperationCancelled(operation="copy", done=1, total=2)
    again = rebuild_error(*pickle.loads(pickle.dumps((type(err), err.fields))))
    assert str(again) == str(err)
