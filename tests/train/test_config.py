import pytest

from lgn_fpga.errors import ConfigError
from lgn_fpga.train.config import CONFIG_DIR, DEFAULT_RECIPE, RECIPES, load_yaml, lr_at, noise_at, resolve_config


def test_defaults_use_the_default_recipe():
    c = resolve_config()
    assert c.mode == "gumbel-ste" and c.recipe == DEFAULT_RECIPE
    assert all(getattr(c, k) == v for k, v in RECIPES[DEFAULT_RECIPE].items())


def test_precedence():
    # YAML keys beat the YAML's recipe; a recipe on the command line beats YAML keys; CLI keys beat all
    assert resolve_config({"recipe": "seed", "noise": 0.5}).noise == 0.5
    assert resolve_config({"noise": 0.5}, {"recipe": "seed"}).noise == 1.0
    assert resolve_config({"noise": 0.5}, {"recipe": "seed", "noise": 0.2}).noise == 0.2
    c = resolve_config({"recipe": "seed"})
    assert (c.noise, c.input_grad, c.gumbel_tau) == (1.0, "hard", 1.0)
    assert resolve_config({}, {"mode": "softmax"}).recipe == "softmax"


def test_builtin_configs_load():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"digits-tiny", "mnist-s", "cifar10-s"} <= set(names)
    for n in names:
        resolve_config(load_yaml(n), source=n)
    assert load_yaml("cifar10-s")["dataset"] == "cifar10"


@pytest.mark.parametrize("d,msg", [
    ({"nosie": 1.0}, "unknown key 'nosie' in t; did you mean 'noise'"),
    ({"steps": "many"}, "key 'steps' in t must be an integer, not 'many'"),
    ({"steps": 1.5}, "key 'steps' in t must be an integer"),
    ({"lr": "fast"}, "key 'lr' in t must be a number"),
    ({"mode": "hard"}, "key 'mode' in t must be one of gumbel-ste, softmax"),
    ({"recipe": "paper"}, "key 'recipe' in t must be one of seed"),
    ({"batch_size": 0}, "key 'batch_size' in t must be positive"),
    ({"noise": -1.0}, "key 'noise' in t must be >= 0, not -1.0"),
    ({"noise_final": -1.0}, "key 'noise_final' in t must be >= 0, not -1.0"),
    ({"weight_decay": -1.0}, "key 'weight_decay' in t must be >= 0"),
    ({"thresholds": 0}, "key 'thresholds' in t must be a count in 1..255"),
    ({"thresholds": 300}, "key 'thresholds' in t must be a count in 1..255"),
    ({"epochs": 0}, "key 'epochs' in t must be positive"),
    ({"epochs": -1.0}, "key 'epochs' in t must be positive"),
    ({"threads": 0}, "key 'threads' in t must be positive"),
    ({"val_size": 0}, "key 'val_size' in t must be positive"),
    ({"noise_schedule": "linear"}, "needs noise_final"),
    ({"lr_schedule": "cosine"}, "needs lr_final"),
    ({"lr_final": -0.1}, "key 'lr_final' in t must be >= 0, not -0.1"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"widths": [10, -2]}, "widths must be a list of positive integers"),
    ({"window": 4}, "window must be an odd positive integer or a list of 4 of them, not 4"),
    ({"window": [3, 5]}, "window must be an odd positive integer or a list of 4 of them"),
    ({"connections": "grid"}, "key 'connections' in t must be one of random, unique, local"),
])
def test_bad_keys(d, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        resolve_config(d, source="t")


def test_bad_yaml_files(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        load_yaml(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="not found .built-in configs: .*digits-tiny"):
        load_yaml(tmp_path / "nope.yaml")


def test_noise_schedules():
    c = resolve_config({"noise": 1.0, "noise_final": 0.0, "noise_schedule": "linear"})
    assert noise_at(c, 0, 101) == 1.0 and noise_at(c, 100, 101) == 0.0 and abs(noise_at(c, 50, 101) - 0.5) < 1e-9
    c = resolve_config({"noise": 1.0, "noise_final": 0.0, "noise_schedule": "cosine"})
    assert noise_at(c, 0, 11) == 1.0 and abs(noise_at(c, 10, 11)) < 1e-12
    assert noise_at(resolve_config({"noise": 0.7}), 5, 10) == 0.7


def test_lr_schedules():
    c = resolve_config({"lr": 0.02, "lr_final": 0.0, "lr_schedule": "cosine"})
    assert lr_at(c, 0, 11) == 0.02 and abs(lr_at(c, 10, 11)) < 1e-12 and abs(lr_at(c, 5, 11) - 0.01) < 1e-12
    c = resolve_config({"lr": 0.01, "lr_final": 0.001, "lr_schedule": "linear"})
    assert abs(lr_at(c, 50, 101) - 0.0055) < 1e-12
    assert lr_at(resolve_config({"lr": 0.003}), 7, 10) == 0.003
