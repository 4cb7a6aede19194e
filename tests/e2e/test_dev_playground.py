"""`webhook-operator dev` as a newcomer runs it, with its output through `| tee` as many
do: a delivery printed with a verified signature and Healthy in `kubectl get`; the printed
portal URL's ticket opening the sample app's catalog; a second `dev` on the same state
directory refused, naming the first, which keeps working; a killed operator, delivery
service and portal restarted in place, deliveries and the ticket going on; and Ctrl-C
stopping every process even though tee dies first. One playground serves those tests (it takes
20-40 s to start on two cores); the last of them stops it. Then the other ways a playground
ends, each with a playground of its own: Ctrl-C while it starts, SIGKILL (its children die
with it), and its control plane dying (it stops, saying why)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from webhook_operator.devcluster.binaries import kubectl_binary

BIN = Path(sys.executable).parent
START_LIMIT = 180.0

# -- processes, as `ps` shows them ------------------------------------------------------------

Proc = tuple[int, str]  # pid and start time: a pid reused by another process is not ours


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(proc: Proc) -> bool:
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and fields[19] == proc[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _tree(root: int) -> dict[Proc, str]:
    """`root` and every process below it, with their command lines."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[Proc, str] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            found[(pid, fields[19])] = _cmdline(pid)
        pending += parents.get(pid, [])
    return found


# -- the playground -------------------------------------------------------------------------


def as_at_a_terminal() -> None:
    """Ctrl-C as a user's terminal delivers it: whoever started the tests may ignore SIGINT
    (a non-interactive shell's `&` does), and an ignored SIGINT stays ignored in every
    child, which the playground rightly honours (`nohup`, `&`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Running:
    """`webhook-operator dev | tee log` started from a shell that, like an interactive one,
    survives Ctrl-C: the signal goes to the pipeline's process group, as a terminal sends it."""

    root: Path
    log: Path
    env: dict[str, str]
    shell: subprocess.Popen[bytes]
    pid: int = 0  # the playground itself
    seen: dict[Proc, str] = field(default_factory=dict)  # every process it ever had

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:  # tee has not opened it yet
            return ""

    def wait_for(self, text: str, limit: float, after: int = 0) -> str:
        """The output from `after` on, once it contains `text`."""
        deadline = time.monotonic() + limit
        while text not in (out := self.output()[after:]):
            assert self.shell.poll() is None, f"the playground ended:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.3)
        return out

    def processes(self) -> dict[Proc, str]:
        found = _tree(self.pid)
        self.seen.update(found)
        return found

    def child(self, marker: str) -> Proc:
        matches = [proc for proc, cmd in self.processes().items() if marker in cmd]
        assert len(matches) == 1, self.processes()
        return matches[0]

    def state(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.root / "state.json").read_text())
        return loaded

    def plugin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl-webhooks"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def portal_get(self, path: str) -> httpx.Response:
        """GET on the tenant API with the state file's ticket, as the portal page will."""
        url = str(self.state()["portalUrl"])
        base, _, ticket = url.partition("/#ticket=")
        assert ticket, url
        return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {ticket}"}, timeout=30)

    def emit_and_see(self, invoice: str, limit: float = 60.0) -> None:
        """Emit an event as a user would and wait for the receiver to print it verified."""
        mark = len(self.output())
        emitted = self.plugin(
            "emit", "billing", "invoice.paid", "--data", f'{{"invoiceId": "{invoice}"}}'
        )
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
        printed = self.wait_for(invoice, limit, after=mark)
        line = next(line for line in printed.splitlines() if invoice in line)
        assert "signature verified" in line, line


def _playground_pid(shell: int, limit: float = 30.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for (pid, _), cmd in _tree(shell).items():
            argv = cmd.split()
            if "webhook-operator" in cmd and argv[-1:] == ["dev"]:
                return pid
        time.sleep(0.1)
    raise AssertionError("`webhook-operator dev` did not start")


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("playground")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env |= {"WEBHOOK_OPERATOR_DEV_DIR": str(work / "dev"), "COLUMNS": "1000"}
    log = work / "terminal.log"
    shell = subprocess.Popen(
        # `trap : INT`: the shell outlives Ctrl-C, as an interactive one does; its children
        # get the default SIGINT (a trapped signal is reset on exec, an ignored one is not).
        ["bash", "-c", 'trap : INT; "$0" dev | tee "$1" >/dev/null', BIN / "webhook-operator", log],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the "terminal's foreground job"
        preexec_fn=as_at_a_terminal,
    )
    running = Running(root=work / "dev", log=log, env=env, shell=shell)
    try:
        running.pid = _playground_pid(shell.pid)
        running.wait_for("signature verified", START_LIMIT)
        running.wait_for("Ctrl-C stops everything", 60)  # the banner, after the portal's ticket
        running.processes()
        yield running
    finally:
        if shell.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                shell.wait(timeout=60)
        # Whatever the outcome, leave no process behind on the CI machine.
        for proc in running.seen:
            if _alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc[0], signal.SIGKILL)
        if shell.poll() is None:
            shell.kill()
            shell.wait()


# -- tests, in the order a user meets these things --------------------------------------------


def test_first_delivery_is_printed_and_the_endpoint_is_healthy(playground: Running) -> None:
    output = playground.output()
    assert "export KUBECONFIG=" in output
    assert "kubectl get webhooks" in output
    assert playground.state()["pid"] == playground.pid
    kubeconfig = playground.root / "cluster" / "kubeconfig"

    def health() -> str:
        return subprocess.run(
            [
                str(kubectl_binary()),
                f"--kubeconfig={kubeconfig}",
                "get",
                "webhookendpoint",
                "local-receiver",
                "-o",
                "jsonpath={.status.health}",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    deadline = time.monotonic() + 30
    while health() != "Healthy":
        assert time.monotonic() < deadline, "endpoint never Healthy"
        time.sleep(0.5)


def test_the_printed_curl_command_works_as_printed(playground: Running) -> None:
    """The hint's grant and curl command, followed to the letter (curl's flags read by
    shlex and sent with httpx: the machine may have no curl)."""
    lines = playground.output().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "or with curl:")
    grant_at = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("(grant"))
    block = " ".join(line.strip().removesuffix("\\") for line in lines[start + 1 : grant_at])
    grants = [line.strip().removesuffix(")") for line in lines[grant_at + 1 : grant_at + 3]]
    exported = next(line.strip() for line in lines if line.strip().startswith("export KUBECONFIG="))
    env = {**playground.env, "KUBECONFIG": exported.split("=", 1)[1]}
    for grant in grants:
        subprocess.run(shlex.split(grant), env=env, check=True, timeout=60)
    kubectl, token_command = re.search(r"\$\((\S+) (create token default)\)", block).groups()  # type: ignore[union-attr]
    token = subprocess.run(
        [kubectl, *token_command.split()],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    argv = shlex.split(block.replace(f"$({kubectl} {token_command})", token))
    assert argv[:3] == ["curl", "-X", "POST"], argv
    headers = dict(value.split(": ", 1) for flag, value in itertools.pairwise(argv) if flag == "-H")
    body = argv[argv.index("-d") + 1]
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # what curl -d sends
    mark = len(playground.output())

    def post() -> httpx.Response:
        return httpx.post(argv[3], headers=headers, content=body.encode(), timeout=30)

    # A RoleBinding takes a moment to reach the apiserver's authorizer, and a refusal met
    # in that moment is remembered for the authorization cache's 30 s.
    deadline = time.monotonic() + 45
    while (response := post()).status_code == 403:
        assert time.monotonic() < deadline, response.text
        time.sleep(1)
    assert response.status_code == 202, response.text
    printed = playground.wait_for("in_3", 60, after=mark)
    assert "signature verified" in printed


def test_the_portal_url_opens_the_sample_apps_catalog(playground: Running) -> None:
    state = playground.state()
    url = state["portalUrl"]
    assert isinstance(url, str)
    assert url.startswith("http://127.0.0.1:"), url
    assert "/#ticket=" in url
    assert url in playground.output(), "the ready banner prints the portal URL"
    assert (playground.root / "state.json").stat().st_mode & 0o077 == 0, "holds a ticket"

    catalog = playground.portal_get("/v1/portal/catalog")
    assert catalog.status_code == 200, catalog.text
    answer = catalog.json()
    assert [t["name"] for t in answer["eventTypes"]] == ["invoice.paid", "invoice.created"]
    paid = answer["eventTypes"][0]
    assert paid["example"]["type"] == "invoice.paid"
    assert "invoiceId" in paid["example"]["data"]
    summary = playground.portal_get("/v1/portal/summary")
    assert summary.status_code == 200, summary.text
    assert summary.json()["endpoints"]["total"] == 1
    plain = httpx.get(f"{url.partition('/#')[0]}/v1/portal/catalog", timeout=30)
    assert plain.status_code == 401

    # The banner's way to a new ticket finds the playground's portal with no flags.
    issued = playground.plugin("portal", "billing", "--scope", "read")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    fresh = issued.stdout.strip().splitlines()[0]
    assert fresh.startswith(url.partition("/#")[0] + "/#ticket="), fresh
    read = httpx.get(
        f"{url.partition('/#')[0]}/v1/portal/summary",
        headers={"Authorization": f"Bearer {fresh.partition('#ticket=')[2]}"},
        timeout=30,
    )
    assert read.status_code == 200, read.text


def test_the_printed_portal_url_lets_a_newcomer_add_an_endpoint_in_a_browser(
    playground: Running, page: Page
) -> None:
    """What the banner promises: open the printed URL and use the page, here by adding an
    endpoint that points at the playground's own receiver (plain http on 127.0.0.1, which
    the sample app's portal settings allow) and sending it a test ping."""
    sample = playground.portal_get("/v1/portal/endpoints").json()["items"][0]
    page.goto(playground.state()["portalUrl"])
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator(".app-name")).to_have_text("Billing (playground)")
    expect(page.locator(f'[data-name="{sample["name"]}"]')).to_be_visible()

    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("URL", exact=True).fill(sample["url"].rstrip("/") + "/from-the-page")
    # invoice.created: the other tests emit invoice.paid and read the receiver's output,
    # where this endpoint's deliveries (signed with its own secret) must not appear.
    page.get_by_role("group", name="Billing").get_by_label("invoice.created", exact=True).check()
    page.get_by_label("Name").fill("tried-in-the-browser")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_text("Store this secret now.")).to_be_visible()
    page.get_by_role("link", name="I have stored it: open the endpoint").click()
    page.get_by_role("button", name="Send test ping").click()
    expect(page.locator('[data-field="status"]')).to_have_text(re.compile(r"^2\d\d$"))

    # Gone again, so the module's later tests see the playground as a newcomer left it.
    page.goto(page.url.rsplit("/", 1)[0] + "/delete")
    page.get_by_role("button", name="Delete endpoint").click()
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator('[data-name="tried-in-the-browser"]')).to_have_count(0)


def test_a_second_playground_on_the_same_directory_is_refused(playground: Running) -> None:
    before = playground.processes()
    kept = [
        playground.root / "delivery.db",
        playground.root / "cluster" / "etcd",
        playground.root / "cluster" / "pki",
        playground.root / "state.json",
    ]
    assert all(path.exists() for path in kept)
    state = playground.state()

    second = subprocess.run(
        [str(BIN / "webhook-operator"), "dev"],
        env=playground.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 1, second.stdout + second.stderr
    said = second.stdout
    assert f"another `webhook-operator dev` (pid {playground.pid}) is running on" in said
    assert str(playground.root) in said
    assert f"delivery service: {state['deliveryUrl']}" in said
    portal_origin = str(state["portalUrl"]).partition("/#")[0]
    assert f"portal:           {portal_origin}\n" in said
    assert "#ticket=" not in said, "someone else's ticket is not shown"
    assert f"kube-apiserver:   {state['server']}" in said
    assert f"kill {playground.pid}" in said
    assert all(path.exists() for path in kept)
    assert playground.state() == state
    assert all(_alive(proc) for proc in before)
    playground.emit_and_see("in_after_refusal")


def test_a_killed_operator_delivery_service_and_portal_are_restarted_in_place(
    playground: Running,
) -> None:
    mark = len(playground.output())
    state = playground.state()
    delivery = playground.child("webhook_operator delivery")
    operator = playground.child("webhook_operator controller")
    portal = playground.child("webhook_operator portal")
    for killed in (delivery, operator, portal):
        os.kill(killed[0], signal.SIGKILL)

    # A new operator waits out the killed one's Lease (15 s) before it leads.
    said = playground.wait_for("the operator is running again", 90, after=mark)
    said = playground.wait_for("the delivery service is running again", 30, after=mark)
    said = playground.wait_for("the portal is running again", 30, after=mark)
    assert "the delivery service was killed by SIGKILL; restarting it" in said
    assert "the operator was killed by SIGKILL; restarting it" in said
    assert "the portal was killed by SIGKILL; restarting it" in said
    assert "stopping" not in said
    assert playground.shell.poll() is None
    assert not _alive(delivery)
    assert not _alive(operator)
    assert not _alive(portal)
    playground.child("webhook_operator delivery")
    playground.child("webhook_operator controller")
    playground.child("webhook_operator portal")
    assert playground.state() == state  # same URLs: restarted in place
    playground.emit_and_see("in_after_restart")
    # The ticket key is a Secret: the restarted portal still honours the ticket.
    assert playground.portal_get("/v1/portal/catalog").status_code == 200


def test_ctrl_c_through_tee_stops_every_process(playground: Running) -> None:
    processes = playground.processes()
    programs = {Path(arg).name for cmd in processes.values() for arg in cmd.split()[:4]}
    pieces = ("etcd", "kube-apiserver", "kube-controller-manager", "delivery", "controller")
    for piece in (*pieces, "portal"):
        assert piece in programs, processes

    os.killpg(playground.shell.pid, signal.SIGINT)  # Ctrl-C: to the playground and tee
    playground.shell.wait(timeout=60)

    deadline = time.monotonic() + 30
    while left := {cmd for proc, cmd in processes.items() if _alive(proc)}:
        assert time.monotonic() < deadline, f"left running after Ctrl-C: {left}"
        time.sleep(0.2)
    assert not (playground.root / "state.json").exists()


# -- ends of a playground of their own ------------------------------------------------------


@contextlib.contextmanager
def _starting(
    tmp_path: Path, until: str = "control plane ready"
) -> Iterator[tuple[subprocess.Popen[str], list[str], Path]]:
    """`webhook-operator dev` with its output read line by line, until it prints `until`;
    afterwards no process of it may be left, whatever the test did."""
    root = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env |= {"WEBHOOK_OPERATOR_DEV_DIR": str(root), "COLUMNS": "1000"}
    process = subprocess.Popen(
        [str(BIN / "webhook-operator"), "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
        preexec_fn=as_at_a_terminal,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    seen: dict[Proc, str] = {}
    try:
        deadline = time.monotonic() + START_LIMIT
        while not any(until in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        seen = _tree(process.pid)
        yield process, lines, root
        reader.join(timeout=10)
        deadline = time.monotonic() + 30
        while left := {cmd for proc, cmd in seen.items() if _alive(proc)}:
            assert time.monotonic() < deadline, f"left running: {left}"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for proc in seen:
            if _alive(proc):
                os.kill(proc[0], signal.SIGKILL)


def test_ctrl_c_while_starting_stops_cleanly(tmp_path: Path) -> None:
    with _starting(tmp_path) as (process, lines, root):
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    output = "".join(lines)
    assert code == 0, output
    assert output.rstrip().endswith("stopped"), output
    assert not (root / "state.json").exists()


def test_a_killed_playground_takes_its_processes_with_it(tmp_path: Path) -> None:
    with _starting(tmp_path) as (process, _, _):
        assert len(_tree(process.pid)) >= 4  # itself, etcd, the apiserver, the controller-manager
        process.send_signal(signal.SIGKILL)  # no cleanup at all
        process.wait(timeout=10)


def test_the_control_plane_dying_stops_the_playground_saying_why(tmp_path: Path) -> None:
    with _starting(tmp_path, until="Ctrl-C stops everything") as (process, lines, root):
        (apiserver,) = [
            proc for proc, cmd in _tree(process.pid).items() if "kube-apiserver" in cmd.split()
        ]
        os.kill(apiserver[0], signal.SIGKILL)
        code = process.wait(timeout=90)
    output = "".join(lines)
    assert code == 1, output
    assert (
        "kube-apiserver was killed by SIGKILL: the playground cannot go on without its"
        " control plane, so it stops." in output
    )
    assert "restarting" not in output
    assert output.rstrip().endswith("stopped"), output
    assert not (root / "state.json").exists()
