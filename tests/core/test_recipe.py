import dataclasses

import pytest

from temtrack.errors import ParameterError
from temtrack.pipeline.recipe import Recipe


@dataclasses.dataclass
class DemoRecipe(Recipe):
    kind = "demo"
    width_px: float = 10.0
    line: list | None = None

    def validate(self):
        if not self.width_px > 0:
            raise ParameterError(f"width_px must be > 0, got {self.width_px}")


def test_round_trip_json_and_yaml(tmp_path):
    r = DemoRecipe(width_px=12.0, line=[1, 2, 3, 4])
    (tmp_path / "r.json").write_text(__import__("json").dumps(r.to_dict()))
    assert DemoRecipe.from_file(tmp_path / "r.json") == r
    (tmp_path / "r.yaml").write_text("kind: demo\nwidth_px: 12.0\nline: [1, 2, 3, 4]\n")
    assert DemoRecipe.from_file(tmp_path / "r.yaml") == r


@pytest.mark.parametrize("text,msg", [
    ('{"kind": "demo", "widht_px": 3}', "unknown recipe keys \\['widht_px'\\]"),
    ('{"kind": "rings"}', "'rings' recipe cannot drive 'demo'"),
    ('{"width_px": 0}', "width_px must be > 0"),
    ('[1, 2]', "must hold a mapping"),
    ('{not json', "not a valid recipe file"),
])
def test_bad_recipe_files(tmp_path, text, msg):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ParameterError, match=msg):
        DemoRecipe.from_file(p)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ParameterError, match="cannot read recipe"):
        DemoRecipe.from_file(tmp_path / "nope.json")
