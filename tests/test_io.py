"""prakit's own JSON files read back checked: each damage is one line naming the file and the fix."""

import errno

import pytest

from prakit.errors import DiskFullError
from prakit.io import DamagedFileError, atomic_file, atomic_folder, read_json

FIX = "delete it to redo the stage"


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
    (b'{"steps": 1', "not JSON (Expecting ',' delimiter: line 1, column 12)"),
    (b"[1, 2]", "its content is a list where an object belongs"),
    (b'{"other": 1}', "steps is missing"),
    (b'{"steps": "3"}', "steps is a string where an integer belongs"),
    (b'{"steps": true}', "steps is a boolean where an integer belongs"),
])
def test_read_json_names_the_file_the_damage_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "record.json"
    path.write_bytes(content)
    with pytest.raises(DamagedFileError) as caught:
        read_json(path, FIX, {"steps": int})
    assert str(caught.value) == f"{path} is damaged: {problem}; {FIX}"


def test_read_json_returns_a_good_file(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{"steps": 3, "extra": [1]}')
    assert read_json(path, FIX, {"steps": int}) == {"steps": 3, "extra": [1]}


def test_a_folder_where_the_file_belongs(tmp_path):
    (tmp_path / "record.json").mkdir()
    with pytest.raises(DamagedFileError, match="a folder where a file belongs"):
        read_json(tmp_path / "record.json", FIX)


def test_an_error_on_a_temporary_file_names_the_target(tmp_path):
    target = tmp_path / "out.npz"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        with atomic_file(target, "wb") as f:
            f.write(b"x")
    assert caught.value.filename == str(target) and ".tmp" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


@pytest.mark.parametrize("atomic", [atomic_file, atomic_folder])
@pytest.mark.parametrize("raised", [OSError(errno.ENOSPC, "No space left on device"),  # as a write says it
                                    OSError(errno.EDQUOT, "Disk quota exceeded")])
def test_a_write_that_finds_no_space_names_the_target(tmp_path, atomic, raised):
    with pytest.raises(DiskFullError, match=rf"^no space left to write {tmp_path / 'out'} \(the device is full"):
        with atomic(tmp_path / "out"):
            raise raised
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_a_temporary_folder_names_the_file_in_the_target(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_folder(tmp_path / "export") as folder:
            (folder / "missing" / "weights").read_bytes()
    assert caught.value.filename == str(tmp_path / "export" / "missing" / "weights")
