"""The clip-world turn benchmark runs end to end on miniature configurations of the real architectures."""

from __future__ import annotations

import json

from pasta_cli.main import main


def test_the_turn_benchmark_times_every_stage_and_writes_json(tmp_path, capsys):
    out = tmp_path / "clip_turn.json"
    assert main(["bench-clip-turn", "--tiny", "--device", "cpu", "--dtype", "float32", "--steps", "1", "2",
                 "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["stages_ms"]) == {"unet_1_step", "unet_2_step", "decode", "clip_images", "clip_prompts",
                                        "scoring"}
    assert all(v >= 0 for v in result["stages_ms"].values())
    stages = result["stages_ms"]
    rest = stages["decode"] + stages["clip_images"] + stages["clip_prompts"] + stages["scoring"]
    assert abs(result["turn_ms"]["2"] - (stages["unet_2_step"] + rest)) < 0.05
    assert result["images_per_s"]["1"] > 0 and "| steps | ms per turn |" in capsys.readouterr().out
