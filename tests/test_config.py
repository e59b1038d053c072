import pytest

from gankit.config import from_dict, load_config, preset_names, to_yaml
from gankit.errors import ConfigError


def test_every_preset_loads_and_round_trips_through_yaml():
    import yaml

    assert {"reference-fashion", "dcgan-fashion", "wgan-gp-grid25", "toy-ring8"} <= set(preset_names())
    for name in preset_names():
        config = load_config(f"configs/{name}.yaml")
        assert from_dict(yaml.safe_load(to_yaml(config))) == config
        assert load_config(name) == config  # bare preset names work from any folder


def test_overrides_are_typed_and_nested():
    config = load_config("configs/reference-fashion.yaml", ["train.epochs=3", "optim.lr_g=1e-4", "stabilizers.spectral_norm=true", "data.data_dir=/x"])
    assert config.train.epochs == 3
    assert config.optim.lr_g == pytest.approx(1e-4)
    assert config.stabilizers.spectral_norm is True
    assert config.data.data_dir == "/x"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'; known keys here: batch_size, epochs"),
        ("trian.epochs=3", "unknown config key 'trian'; known keys here: name, data, model"),
        ("loss.name=wgangp", "bad config value loss.name='wgangp': Input should be 'minimax', 'non-saturating', 'lsgan', 'wgan', 'wgan-gp' or 'hinge'"),
        ("train.batch_size=0", "bad config value train.batch_size=0: Input should be greater than 0"),
        ("stabilizers.label_smoothing=0.7", "stabilizers.label_smoothing=0.7: Input should be less than 0.5"),
        ("model.name=biggan", "'mlp-reference', 'dcgan', 'resnet', 'stylegan2' or 'mlp-toy'"),
        ("train.epochs=many", "bad config value train.epochs='many': Input should be a valid integer"),
        ("train.epochs", "is not KEY=VALUE"),
    ],
)
def test_bad_overrides_give_one_clear_line(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config("configs/reference-fashion.yaml", [override])
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="d_output=sigmoid only suits the BCE losses"):
        load_config("configs/reference-fashion.yaml", ["loss.name=wgan-gp"])
    with pytest.raises(ConfigError, match="multiple of stabilizers.pack"):
        from_dict({"train": {"batch_size": 64}, "stabilizers": {"pack": 3}})
    with pytest.raises(ConfigError, match="label_smoothing has no meaning"):
        from_dict({"loss": {"name": "hinge"}, "stabilizers": {"label_smoothing": 0.1}})


def test_loss_implied_defaults_are_written_out():
    assert from_dict({"loss": {"name": "wgan-gp"}}).stabilizers.gradient_penalty == 10.0
    assert from_dict({"loss": {"name": "wgan"}}).stabilizers.weight_clip == 0.01
    plain = from_dict({})
    assert plain.stabilizers.gradient_penalty == 0.0 and plain.stabilizers.weight_clip == 0.0
    assert from_dict({"loss": {"name": "wgan-gp"}, "stabilizers": {"gradient_penalty": 1}}).stabilizers.gradient_penalty == 1.0


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listing)
