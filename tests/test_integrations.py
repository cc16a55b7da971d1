"""The framework-free parts of ``semroute.integrations``: settings, one Router per process, imports."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from semroute import ConfigError, Router
from semroute.integrations.per_process import PerProcessRouter
from semroute.integrations.spec import RouterSpec


def test_importing_semroute_never_imports_a_web_framework():
    code = (
        "import sys, semroute, semroute.integrations, semroute.integrations.spec, "
        "semroute.integrations.http, semroute.integrations.per_process\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'django', 'werkzeug')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_new_process_id_builds_a_new_router_and_leaves_the_old_one_open(tmp_path, fake_ollama, cheap_router_options):
    pid = [100]
    built: list[Router] = []

    def build() -> Router:
        built.append(Router(data_dir=tmp_path / str(len(built)), **cheap_router_options))
        return built[-1]

    holder = PerProcessRouter(build, getpid=lambda: pid[0])
    assert not holder.built and holder.builds == 0
    first = holder.get()
    assert holder.get() is first and holder.builds == 1 and holder.built
    pid[0] = 101  # as after fork: the child sees the parent's holder
    assert not holder.built
    second = holder.get()
    assert second is not first and holder.builds == 2
    holder.close()  # closes only this process's router
    assert not holder.built and holder.get() is not second and holder.builds == 3
    holder.close()
    first.close()


def test_concurrent_first_uses_build_one_router(tmp_path, cheap_router_options):
    started = threading.Event()
    release = threading.Event()

    def build() -> Router:
        started.set()
        release.wait(30)  # hold the build open until every thread is waiting for it
        return Router(data_dir=tmp_path, **cheap_router_options)

    holder = PerProcessRouter(build)
    got: list[Router] = []
    threads = [threading.Thread(target=lambda: got.append(holder.get())) for _ in range(6)]
    for t in threads:
        t.start()
    assert started.wait(30)
    release.set()
    for t in threads:
        t.join(30)
    assert len(got) == 6 and len({id(r) for r in got}) == 1 and holder.builds == 1
    holder.close()


def test_spec_turns_settings_into_router_arguments(tmp_path):
    spec = RouterSpec.from_django({"DATA_DIR": str(tmp_path), "OLLAMA_URLS": ["http://a:1", "http://b:2"],
                                   "NAMESPACE": "shop", "OPTIONS": {"namespace": "from-options"}, "CONFIG": None})
    kwargs = spec.router_kwargs()
    assert kwargs["data_dir"] == tmp_path and kwargs["namespace"] == "from-options"  # options win
    assert {t.hosts for t in kwargs["tiers"].values()} == {("http://a:1", "http://b:2")}
    assert RouterSpec.from_django(None).router_kwargs() == {}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ([("DATA_DIR", "x")], "settings.SEMROUTE must be a dict"),
        ({"DATADIR": "x"}, "unknown key.*DATADIR"),
        ({"OLLAMA_URLS": 11434}, "ollama_urls must be http"),
        ({"NAMESPACE": " "}, "namespace must be a non-empty string"),
        ({"OPTIONS": ["embedder"]}, "options must be a mapping"),
        ({"CONFIG": ""}, "config must be a path"),
    ],
)
def test_bad_settings_are_config_errors(setting, message):
    with pytest.raises(ConfigError, match=message):
        RouterSpec.from_django(setting)


def test_a_missing_config_file_is_a_config_error_at_build_time(tmp_path):
    spec = RouterSpec.from_django({"CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match="no such file"):
        spec.router_kwargs()
