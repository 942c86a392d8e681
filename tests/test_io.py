"""prakit's own JSON files read back checked: each damage is one line naming the file and the fix."""

import pytest

from prakit.io import DamagedFileError, read_json

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
