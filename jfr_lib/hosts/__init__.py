"""How to reach the machine where jobs run: the local host, or SSH (fabric or the system OpenSSH)."""

from __future__ import annotations

from jfr_lib.hosts.base import Host, RunResult


def get_host(worker) -> Host:
    """The host object for a worker of the project file."""
    if worker.is_local:
        from jfr_lib.hosts.local import LocalHost

        return LocalHost(timeout=worker.timeout_execute)
    if worker.ssh_client == "openssh":
        from jfr_lib.hosts.openssh import OpenSSHHost

        return OpenSSHHost(worker)
    if worker.interactive_login:  # the connection is held by the worker's login process
        from jfr_lib.hosts.broker import BrokerHost

        return BrokerHost(worker)
    from jfr_lib.hosts.ssh import SSHHost

    return SSHHost(worker)


__all__ = ["Host", "RunResult", "get_host"]
