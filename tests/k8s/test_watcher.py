"""Pod endings reported exactly once: across reconnects, dropped streams, 410 Gone, restarts."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes.client import ApiClient

from k8s.client import KubeClient
from k8s.config import emulator_configuration
from k8s.emulator import EmulatorConfig, EmulatorServer
from k8s.errors import KubeForbidden
from k8s.models import PodEnding
from k8s.watcher import PodEndingWatcher
from tests.k8s.conftest import NAMESPACE, pod_request, wait_for, wait_running


def collect(
    watcher: PodEndingWatcher, expected: int, timeout: float = 8.0, settle: bool = True
) -> list[PodEnding]:
    """Stream until ``expected`` endings arrived; then (``settle``) watch one more window, in
    which anything reported twice would show up."""
    endings: list[PodEnding] = []
    for ending in watcher.stream(timeout):
        endings.append(ending)
        if len(endings) >= expected:
            break
    if settle:
        endings += watcher.poll(1).endings
    return endings


def by_name(endings: list[PodEnding]) -> dict[str, PodEnding]:
    counts = Counter(e.pod_name for e in endings)
    assert all(n == 1 for n in counts.values()), f"reported more than once: {counts}"
    return {e.pod_name: e for e in endings}


def test_each_kind_of_ending_is_reported_once(kube: KubeClient) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)  # the initial list: from here on no deletion can be missed
    ok = kube.create_job_pod(pod_request(run_seconds=0.2))
    bad = kube.create_job_pod(pod_request(run_seconds=0.2, run_outcome="Failed"))
    killed = kube.create_job_pod(pod_request())
    evicted = kube.create_job_pod(pod_request())
    wait_running(kube, killed.name)
    wait_running(kube, evicted.name)
    kube.delete_pod(killed.name, grace_seconds=0)
    kube.evict_pod(evicted.name, grace_seconds=1)
    # Finished pods are cleaned up: their DELETED events must not count as new endings.
    wait_for(lambda: kube.pod_phase(ok.name) == "Succeeded")
    wait_for(lambda: kube.pod_phase(bad.name) == "Failed")

    endings = by_name(collect(watcher, 4, settle=False))
    kube.delete_pod(ok.name, grace_seconds=0)
    kube.delete_pod(bad.name, grace_seconds=0)
    assert watcher.poll(1).endings == []

    assert endings.keys() == {ok.name, bad.name, killed.name, evicted.name}
    assert endings[ok.name].outcome == "Succeeded"
    assert endings[ok.name].exit_code == 0
    assert endings[ok.name].job_id == ok.job_id
    assert endings[bad.name].outcome == "Failed"
    assert endings[bad.name].exit_code == 1
    assert endings[killed.name].outcome == "Deleted"
    # An evicted pod is killed after its grace period: the kubelet reports Failed, then it goes.
    assert endings[evicted.name].outcome == "Failed"
    assert endings[evicted.name].disruption_reason == "EvictionByEvictionAPI"
    assert endings[evicted.name].exit_code == 137


def test_terminal_pods_found_by_the_first_list_are_reported(kube: KubeClient) -> None:
    done = kube.create_job_pod(pod_request(run_seconds=0))
    wait_for(lambda: kube.pod_phase(done.name) == "Succeeded")
    batch = kube.pod_ending_watcher().poll(0)  # a zero window only lists
    assert batch.relisted
    assert [e.pod_name for e in batch.endings] == [done.name]


def test_checkpoint_only_covers_endings_the_caller_came_back_from(kube: KubeClient) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)
    pod = kube.create_job_pod(pod_request(run_seconds=0.1))
    before = int(watcher.resource_version or 0)
    stream = watcher.stream(5)
    ending = next(stream)
    assert ending.pod_name == pod.name
    # While the caller holds the ending, the checkpoint still precedes it ...
    assert before <= int(watcher.resource_version or 0) < int(ending.resource_version)
    stream.close()
    # ... so a watcher resumed from it reports the ending again (at least once, never lost).
    again = PodEndingWatcher(kube, watcher.resource_version).stream(5)
    assert next(again).uid == ending.uid
    again.close()


def test_resume_from_a_checkpoint_reports_only_later_endings(kube: KubeClient) -> None:
    first = kube.create_job_pod(pod_request(run_seconds=0.1))
    watcher = kube.pod_ending_watcher()
    # settle: the caller comes back after handling the ending, so the checkpoint covers it.
    assert [e.pod_name for e in collect(watcher, 1)] == [first.name]
    checkpoint = watcher.resource_version

    # The worker restarts; meanwhile the first pod is deleted and a second one ends.
    kube.delete_pod(first.name, grace_seconds=0)
    second = kube.create_job_pod(pod_request(run_seconds=0.1))
    wait_for(lambda: kube.pod_phase(second.name) == "Succeeded")

    resumed = PodEndingWatcher(kube, checkpoint)
    # Events replay in order: a wrongly repeated first ending would come before the second.
    endings = collect(resumed, 1, settle=False)
    assert [e.pod_name for e in endings] == [second.name]


def test_server_ending_watches_early_reconnects_without_loss_or_repeat() -> None:
    # A server may end a watch long before timeoutSeconds (min-request-timeout): here every
    # 0.2 s, while pods end every 0.1 s, so endings straddle many reconnects.
    config = EmulatorConfig(start_delay_seconds=0.01, watch_max_seconds=0.2)
    with EmulatorServer(config=config) as emulator:
        client = ApiClient(emulator_configuration(emulator.url))
        kube = KubeClient(client, NAMESPACE)
        watcher = kube.pod_ending_watcher()
        watcher.poll(0)
        pods = [kube.create_job_pod(pod_request(run_seconds=0.1 * i)) for i in range(1, 8)]
        endings = by_name(collect(watcher, len(pods), settle=False) + watcher.poll(1).endings)
        assert endings.keys() == {p.name for p in pods}
        assert emulator.state()["watchesServed"] >= 5
        client.close()


def test_dropped_connections_mid_stream(kube: KubeClient, emulator: EmulatorServer) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)
    pods = [kube.create_job_pod(pod_request(run_seconds=0.1)) for _ in range(4)]
    wait_for(lambda: all(kube.pod_phase(p.name) == "Succeeded" for p in pods))
    # Each of the next three watches dies after one event (a pod's ADDED, MODIFIED, …).
    emulator.inject_fault("pods.watch", drop=True, after_events=1, times=3)
    endings = by_name(collect(watcher, len(pods)))
    assert endings.keys() == {p.name for p in pods}
    assert emulator.pending_faults() == []


def test_watch_errors_are_retried(kube: KubeClient, emulator: EmulatorServer) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)
    pod = kube.create_job_pod(pod_request(run_seconds=0.1))
    emulator.inject_fault("pods.watch", status=500, times=2)
    endings = collect(watcher, 1, settle=False)
    assert [e.pod_name for e in endings] == [pod.name]


def test_forbidden_watch_is_raised(kube: KubeClient, emulator: EmulatorServer) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)
    emulator.inject_fault("pods.watch", status=403)
    with pytest.raises(KubeForbidden):
        watcher.poll(1)


def test_410_gone_relists_and_reports_each_end_once(
    kube: KubeClient, emulator: EmulatorServer
) -> None:
    watcher = kube.pod_ending_watcher()
    reported = kube.create_job_pod(pod_request(run_seconds=0.1))
    vanished = kube.create_job_pod(pod_request())
    finished = kube.create_job_pod(pod_request())
    wait_running(kube, vanished.name)
    wait_running(kube, finished.name)
    assert [e.pod_name for e in collect(watcher, 1, settle=False)] == [reported.name]

    # While the watcher is away, one pod is force-deleted, one finishes, history is compacted.
    kube.delete_pod(vanished.name, grace_seconds=0)
    emulator.end_pod(finished.name, phase="Succeeded")
    emulator.compact()

    # One window: the relist reports both ends at once, a repeat would follow in the window.
    batch = watcher.poll(1)
    assert batch.relisted
    endings = by_name(batch.endings)
    assert endings.keys() == {vanished.name, finished.name}
    assert endings[vanished.name].outcome == "Deleted"
    assert endings[finished.name].outcome == "Succeeded"


def test_injected_410_relists(kube: KubeClient, emulator: EmulatorServer) -> None:
    watcher = kube.pod_ending_watcher()
    watcher.poll(0)
    pod = kube.create_job_pod(pod_request(run_seconds=0.1))
    emulator.inject_fault("pods.watch", status=410)
    endings = collect(watcher, 1, settle=False)
    assert [e.pod_name for e in endings] == [pod.name]


def test_many_watchers_see_the_same_endings(kube: KubeClient, emulator: EmulatorServer) -> None:
    pods = [kube.create_job_pod(pod_request(run_seconds=0.3)) for _ in range(3)]

    def watch_once(_: int) -> set[str]:
        return set(by_name(collect(kube.pod_ending_watcher(), len(pods), settle=False)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(watch_once, range(8)))
    assert all(names == {p.name for p in pods} for names in seen)
    wait_for(lambda: emulator.watcher_count == 0)


def test_checkpoint_from_before_an_emulator_restart_relists(kube: KubeClient) -> None:
    # The checkpoint is ahead of the server (a restarted emulator, a restored cluster): a
    # real server answers "Too large resource version" (504); only a new list recovers.
    pod = kube.create_job_pod(pod_request(run_seconds=0))
    wait_for(lambda: kube.pod_phase(pod.name) == "Succeeded")
    batch = kube.watch_pod_endings("999999", 1)
    assert batch.relisted
    assert [e.pod_name for e in batch.endings] == [pod.name]
    assert batch.resource_version is not None
    assert int(batch.resource_version) < 999999
