"""Config: precedence, sources, errors that name the key and the file, systemd dirs, --print-config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmd import daemon
from llmd.config import Config, load_config, render_config
from llmd.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "llmd.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load(tmp_path: Path, text: str = "", env: dict | None = None, flags: dict | None = None) -> Config:
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), **(env or {})}
    return load_config(write(tmp_path, text), env=env, flags=flags)


def config_error(tmp_path: Path, text: str = "", **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kw)
    msg = str(info.value)
    assert "\n" not in msg, f"ConfigError must be one line: {msg!r}"
    return msg


# -- precedence and sources ----------------------------------------------------

def test_defaults_when_nothing_is_set(tmp_path):
    cfg = load(tmp_path)
    assert cfg.server.port == 8000
    assert cfg.server.host == "127.0.0.1"
    assert cfg.engine.queue_size == 16
    assert cfg.models.default == "smollm2-135m-instruct"
    assert cfg.sources.get("server.port", "default") == "default"
    assert {k: s for k, _, s in cfg.items()}["server.port"] == "default"


def test_file_overrides_default(tmp_path):
    cfg = load(tmp_path, "[server]\nport = 9001\n[sampling]\ntemperature = 1\n")
    f = tmp_path / "llmd.toml"
    assert cfg.server.port == 9001
    # an integer in the file is accepted for a float key, and becomes a float
    assert cfg.sampling.temperature == 1.0 and isinstance(cfg.sampling.temperature, float)
    assert cfg.sources["server.port"] == f"file {f}"
    assert cfg.config_file == str(f)


def test_env_overrides_file(tmp_path):
    cfg = load(tmp_path, "[server]\nport = 9001\nhost = '0.0.0.0'\n",
               env={"LLMD_SERVER_PORT": "9002", "LLMD_SERVER_UNIX_SOCKET": "none",
                    "LLMD_MODELS_LOAD_DEFAULT": "false"})
    assert cfg.server.port == 9002
    assert cfg.server.host == "0.0.0.0"  # the file still wins over the default
    assert cfg.server.unix_socket == "none" and cfg.socket_path is None
    assert cfg.models.load_default is False
    assert cfg.sources["server.port"] == "env LLMD_SERVER_PORT"
    assert cfg.sources["server.unix_socket"] == "env LLMD_SERVER_UNIX_SOCKET"
    assert cfg.sources["server.host"].startswith("file ")


def test_flags_override_env_and_file(tmp_path):
    cfg = load(tmp_path, "[server]\nport = 9001\n", env={"LLMD_SERVER_PORT": "9002"},
               flags={"server.port": 9003, "server.host": None})
    assert cfg.server.port == 9003
    assert cfg.sources["server.port"] == "flag --server.port"
    # a flag given as None means "not given"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.sources.get("server.host", "default") == "default"


def test_flag_strings_are_coerced(tmp_path):
    cfg = load(tmp_path, flags={"engine.queue_size": "3", "models.load_default": "no"})
    assert cfg.engine.queue_size == 3
    assert cfg.models.load_default is False


def test_items_list_every_key_with_its_source(tmp_path):
    f = write(tmp_path, "[engine]\nn_ctx = 2048\n")
    cfg = load_config(f, env={"LLMD_LOG_LEVEL": "debug", "STATE_DIRECTORY": str(tmp_path)},
                      flags={"sampling.top_k": 7})
    items = {k: (v, s) for k, v, s in cfg.items()}
    # every dataclass field of every section is listed
    for section in ("server", "paths", "engine", "models", "sampling", "log"):
        for name in vars(getattr(cfg, section)):
            assert f"{section}.{name}" in items
    assert items["engine.n_ctx"] == (2048, f"file {f}")
    assert items["log.level"] == ("debug", "env LLMD_LOG_LEVEL")
    assert items["sampling.top_k"] == (7, "flag --sampling.top_k")
    assert items["server.port"] == (8000, "default")
    assert items["paths.state_dir"] == (str(tmp_path), "env STATE_DIRECTORY")


# -- errors --------------------------------------------------------------------

def test_unknown_key_names_key_and_file(tmp_path):
    msg = config_error(tmp_path, "[server]\nprot = 1\n")
    assert "server.prot" in msg
    assert str(tmp_path / "llmd.toml") in msg


def test_unknown_section_names_section_and_file(tmp_path):
    msg = config_error(tmp_path, "[sever]\nport = 1\n")
    assert "sever" in msg
    assert str(tmp_path / "llmd.toml") in msg


def test_section_that_is_not_a_table(tmp_path):
    msg = config_error(tmp_path, "server = 5\n")
    assert "server" in msg and str(tmp_path / "llmd.toml") in msg


@pytest.mark.parametrize("text,key", [
    ("[server]\nport = 'eighty'\n", "server.port"),
    ("[server]\nport = 80.5\n", "server.port"),
    ("[server]\nport = true\n", "server.port"),
    ("[models]\nload_default = 1\n", "models.load_default"),
    ("[sampling]\ntemperature = 'hot'\n", "sampling.temperature"),
    ("[server]\nhost = 127\n", "server.host"),
])
def test_wrong_type_names_key_and_file(tmp_path, text, key):
    msg = config_error(tmp_path, text)
    assert key in msg
    assert str(tmp_path / "llmd.toml") in msg


def test_out_of_range_names_key_and_file(tmp_path):
    msg = config_error(tmp_path, "[server]\nport = 70000\n")
    assert "server.port" in msg and str(tmp_path / "llmd.toml") in msg
    msg = config_error(tmp_path, "[sampling]\ntemperature = 2.5\n")
    assert "sampling.temperature" in msg and str(tmp_path / "llmd.toml") in msg
    msg = config_error(tmp_path, '[engine]\nkv_cache_type = "q5_1"\n')
    assert "engine.kv_cache_type" in msg and "q8_0" in msg


def test_invalid_toml_names_file(tmp_path):
    msg = config_error(tmp_path, "[server\nport = = 1\n")
    assert str(tmp_path / "llmd.toml") in msg
    assert "TOML" in msg


def test_missing_explicit_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_file(tmp_path):
    # a directory cannot be read as a file, even by root
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(d, env={})
    assert str(d) in str(info.value)
    assert "cannot read" in str(info.value)


def test_llmd_config_env_names_the_file(tmp_path):
    f = write(tmp_path, "[server]\nport = 1234\n", "other.toml")
    cfg = load_config(None, env={"LLMD_CONFIG": str(f), "STATE_DIRECTORY": str(tmp_path)})
    assert cfg.server.port == 1234
    assert cfg.config_file == str(f)
    with pytest.raises(ConfigError):
        load_config(None, env={"LLMD_CONFIG": str(tmp_path / "missing.toml")})


def test_env_errors_name_the_variable(tmp_path):
    msg = config_error(tmp_path, env={"LLMD_SERVER_PORT": "abc"})
    assert "LLMD_SERVER_PORT" in msg and "server.port" in msg
    msg = config_error(tmp_path, env={"LLMD_SERVER_NOPE": "1"})
    assert "LLMD_SERVER_NOPE" in msg
    msg = config_error(tmp_path, env={"LLMD_BOGUS_X": "1"})
    assert "LLMD_BOGUS_X" in msg


def test_unknown_flag_key(tmp_path):
    msg = config_error(tmp_path, flags={"server.nope": "1"})
    assert "server.nope" in msg


def test_bad_socket_mode(tmp_path):
    msg = config_error(tmp_path, "[server]\nsocket_mode = '0999'\n")
    assert "server.socket_mode" in msg and str(tmp_path / "llmd.toml") in msg


# -- directories ---------------------------------------------------------------

def test_state_and_runtime_directory_from_systemd(tmp_path):
    f = write(tmp_path, "")
    cfg = load_config(f, env={"STATE_DIRECTORY": "/var/lib/llmd:/var/lib/other",
                              "RUNTIME_DIRECTORY": "/run/llmd"})
    assert cfg.state_dir == Path("/var/lib/llmd")
    assert cfg.db_path == Path("/var/lib/llmd/llmd.db")
    assert cfg.models_dir == Path("/var/lib/llmd/models")
    assert cfg.runtime_dir == Path("/run/llmd")
    assert cfg.socket_path == Path("/run/llmd/llmd.sock")
    assert cfg.sources["paths.state_dir"] == "env STATE_DIRECTORY"
    assert cfg.sources["paths.runtime_dir"] == "env RUNTIME_DIRECTORY"


def test_explicit_dirs_win_over_systemd(tmp_path):
    f = write(tmp_path, f"[paths]\nstate_dir = '{tmp_path / 's'}'\n")
    cfg = load_config(f, env={"STATE_DIRECTORY": "/var/lib/llmd", "RUNTIME_DIRECTORY": "/run/llmd"},
                      flags={"paths.runtime_dir": str(tmp_path / "r")})
    assert cfg.state_dir == tmp_path / "s"
    assert cfg.runtime_dir == tmp_path / "r"
    assert cfg.sources["paths.state_dir"] == f"file {f}"


def test_xdg_fallbacks(tmp_path):
    f = write(tmp_path, "")
    cfg = load_config(f, env={"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_RUNTIME_DIR": str(tmp_path / "xr")})
    assert cfg.state_dir == tmp_path / "data" / "llmd"
    assert cfg.runtime_dir == tmp_path / "xr" / "llmd"
    cfg = load_config(f, env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert cfg.runtime_dir == cfg.state_dir  # no runtime dir at all: the state dir


def test_explicit_unix_socket(tmp_path):
    cfg = load(tmp_path, f"[server]\nunix_socket = '{tmp_path / 'x.sock'}'\n")
    assert cfg.socket_path == tmp_path / "x.sock"


def test_render_config_shows_sources(tmp_path):
    cfg = load(tmp_path, "[server]\nport = 9001\n")
    text = render_config(cfg)
    assert f"port = 9001  # file {tmp_path / 'llmd.toml'}" in text
    assert 'host = "127.0.0.1"  # default' in text
    assert "load_default = true  # default" in text


# -- the daemon's entry point --------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("LLMD_") or name in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))


_LINE = re.compile(r"^(\w+) = (.*)  # (.+)$")


def test_main_print_config(tmp_path, capsys, clean_env, monkeypatch):
    f = write(tmp_path, "[engine]\nn_ctx = 1024\n")
    monkeypatch.setenv("LLMD_LOG_LEVEL", "warning")
    rc = daemon.main(["--print-config", "--config", str(f), "--port", "9100", "--set", "sampling.top_k=5"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err == ""
    assert f"# config file: {f}" in out
    shown: dict[str, tuple[str, str]] = {}
    section = None
    for line in out.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif (m := _LINE.match(line)):
            shown[f"{section}.{m.group(1)}"] = (m.group(2), m.group(3))
    cfg = load_config(f, flags={"server.port": 9100, "sampling.top_k": "5"})
    expected = {k: s for k, _, s in cfg.items()}
    assert set(shown) == set(expected), "every key is printed once"
    for key, source in expected.items():
        assert shown[key][1] == source, key
    assert shown["engine.n_ctx"] == ("1024", f"file {f}")
    assert shown["server.port"] == ("9100", "flag --server.port")
    assert shown["sampling.top_k"] == ("5", "flag --sampling.top_k")
    assert shown["log.level"] == ('"warning"', "env LLMD_LOG_LEVEL")
    assert shown["paths.state_dir"] == (f'"{tmp_path / "state"}"', "env STATE_DIRECTORY")
    assert shown["server.host"] == ('"127.0.0.1"', "default")


@pytest.mark.parametrize("text,args,needle", [
    ("[server]\nport = 'x'\n", [], "server.port"),
    ("[nope]\n", [], "nope"),
    ("[server\n", [], "TOML"),
    ("", ["--set", "server.bogus=1"], "server.bogus"),
    ("", ["--set", "novalue"], "--set"),
    ("", ["--log-level", "loud"], "log.level"),
])
def test_main_bad_config_exits_2_with_one_line(tmp_path, capsys, clean_env, text, args, needle):
    f = write(tmp_path, text)
    rc = daemon.main(["--print-config", "--config", str(f), *args])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("llmd: config error:")
    assert needle in lines[0]


def test_main_missing_config_file(tmp_path, capsys, clean_env):
    rc = daemon.main(["--print-config", "--config", str(tmp_path / "missing.toml")])
    _, err = capsys.readouterr()
    assert rc == 2
    assert str(tmp_path / "missing.toml") in err
    assert len(err.strip().splitlines()) == 1


def test_render_config_masks_secrets(tmp_path):
    cfg = load_config(config_file=write(tmp_path, '[alerts]\nwebhook_secret = "hush"\nsmtp_password = "pw"\n'
                                                  'webhook_url = "http://127.0.0.1:9/h"\n'), env={})
    text = render_config(cfg)
    assert "hush" not in text and "pw\"" not in text
    assert 'webhook_secret = "********"' in text and 'smtp_password = "********"' in text
    assert 'webhook_url = "http://127.0.0.1:9/h"' in text  # not a secret by itself
    assert 'smtp_username = ""' in text  # an empty value is shown as it is


@pytest.mark.parametrize("key, value", [("gpu_utilization_high", 101), ("gpu_temperature_high", 201),
                                        ("error_rate_high", 1.5), ("response_time_high", -1)])
def test_alert_thresholds_are_range_checked(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"alerts.{key}"):
        load_config(config_file=write(tmp_path, f"[alerts]\n{key} = {value}\n"), env={})
