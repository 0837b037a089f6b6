"""tools/browser.py: which way `make test` gets its Chromium, on any machine (all branches faked)."""

from __future__ import annotations

import pytest

from tools import browser as B


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: nothing installed; records the commands run; each can be made to work."""
    state = {"installed": None, "ran": [], "works": set(), "system": "Linux", "root": True, "debian": True}

    def run(cmd, timeout=900):
        state["ran"].append(" ".join(cmd[:3]))
        key = "apt" if cmd[0] == "apt-get" else "playwright"
        if key in state["works"] and (key == "playwright" or cmd[1] == "install"):
            state["installed"] = {"apt": "/usr/bin/chromium", "playwright": "/pw/chrome-linux/chrome"}[key]
        return key in state["works"]

    monkeypatch.delenv("TXMERGE_CHROMIUM", raising=False)
    monkeypatch.delenv("TXMERGE_SKIP_BROWSER", raising=False)
    monkeypatch.setattr(B, "run", run)
    monkeypatch.setattr(B.shutil, "which", lambda name: state["installed"] if state["installed"] == "/usr/bin/chromium" and name == "chromium" else None)
    monkeypatch.setattr(B, "playwright_chromium", lambda: state["installed"] if state["installed"] and state["installed"].startswith("/pw") else None)
    monkeypatch.setattr(B.platform, "system", lambda: state["system"])
    monkeypatch.setattr(B, "is_root", lambda: state["root"])
    monkeypatch.setattr(B, "is_debian", lambda: state["debian"])
    return state


def test_an_installed_chromium_is_used_as_is(machine):
    machine["installed"] = "/usr/bin/chromium"
    assert B.provision() == "/usr/bin/chromium" and machine["ran"] == []


def test_root_on_debian_uses_apt(machine):
    machine["works"] = {"apt", "playwright"}
    assert B.provision() == "/usr/bin/chromium"
    assert machine["ran"] == ["apt-get update", "apt-get install -y"]


@pytest.mark.parametrize("system,root,debian", [("Linux", False, True), ("Linux", True, False), ("Darwin", True, False), ("Windows", False, False)])
def test_elsewhere_playwright_installs_its_own(machine, system, root, debian):
    machine.update(system=system, root=root, debian=debian, works={"apt", "playwright"})
    assert B.provision() == "/pw/chrome-linux/chrome"
    assert all("apt-get" not in cmd for cmd in machine["ran"]) and len(machine["ran"]) == 1
    assert machine["ran"][0].endswith("-m playwright")


def test_apt_failing_falls_back_to_playwright(machine):
    machine["works"] = {"playwright"}
    assert B.provision() == "/pw/chrome-linux/chrome"
    assert machine["ran"][0] == "apt-get update" and machine["ran"][-1].endswith("-m playwright")


def test_nothing_works_is_one_sentence(machine, capsys):
    assert B.main() == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].count(". ") == 0 and err[0].endswith("test.")
    assert "TXMERGE_SKIP_BROWSER=1" in err[0] and "playwright install chromium" in err[0]


def test_found_path_is_printed_alone(machine, capsys):
    machine["installed"] = "/usr/bin/chromium"
    assert B.main() == 0
    assert capsys.readouterr().out == "/usr/bin/chromium\n"


def test_skip_is_explicit(machine, monkeypatch, capsys):
    monkeypatch.setenv("TXMERGE_SKIP_BROWSER", "1")
    assert B.main() == 0 and machine["ran"] == [] and capsys.readouterr().out == ""


def test_make_test_provisions_before_pytest():
    from pathlib import Path

    make = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = make[make.index("\ntest: "):]
    recipe = recipe[: recipe.index("\n\n")]
    assert recipe.index("tools/browser.py") < recipe.index("-m pytest") and 'TXMERGE_CHROMIUM="$$chromium"' in recipe
