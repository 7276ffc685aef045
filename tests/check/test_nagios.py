"""`webops check` run by Debian's Nagios (nagios4) as it runs any plugin: a command definition, a
service, Nagios's own scheduler; the result read back from its status.dat."""

from __future__ import annotations

import getpass
import grp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need, stop_process, wait_until
from tests.statsd.conftest import start_daemon  # noqa: F401 - the daemon fixture, shared

NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"


def nagios_config(tmp: Path, command_line: str) -> Path:
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    (tmp / "spool").mkdir()
    (tmp / "objects.cfg").write_text(
        f"""
define timeperiod {{
  timeperiod_name 24x7
  alias always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}}
define contact {{
  contact_name nobody
  host_notifications_enabled 0
  service_notifications_enabled 0
  host_notification_period 24x7
  service_notification_period 24x7
  host_notification_options n
  service_notification_options n
  host_notification_commands noop
  service_notification_commands noop
}}
define command {{
  command_name noop
  command_line /bin/true
}}
define command {{
  command_name check_webops
  command_line {command_line}
}}
define host {{
  host_name web1
  address 127.0.0.1
  check_command noop
  max_check_attempts 1
  check_period 24x7
  contacts nobody
  notification_period 24x7
}}
define service {{
  host_name web1
  service_description queue
  check_command check_webops!10!20
  max_check_attempts 1
  check_interval 1
  retry_interval 1
  check_period 24x7
  contacts nobody
  notification_period 24x7
}}
"""
    )
    cfg = tmp / "nagios.cfg"
    cfg.write_text(
        f"""log_file={tmp}/nagios.log
cfg_file={tmp}/objects.cfg
object_cache_file={tmp}/objects.cache
precached_object_file={tmp}/objects.precache
status_file={tmp}/status.dat
status_update_interval=1
temp_file={tmp}/nagios.tmp
temp_path={tmp}
lock_file={tmp}/nagios.lock
state_retention_file={tmp}/retention.dat
retain_state_information=0
check_result_path={tmp}/spool
check_external_commands=0
nagios_user={user}
nagios_group={group}
interval_length=1
service_inter_check_delay_method=n
max_service_check_spread=1
enable_notifications=0
use_syslog=0
"""
    )
    return cfg


def test_nagios_runs_the_check_and_records_its_state(start_daemon, tmp_path: Path) -> None:  # noqa: F811
    need(os.path.exists(NAGIOS), "nagios4 (apt-get install nagios4)")
    d = start_daemon(
        backends=["store"],
        store={"dir": str(tmp_path / "data"), "retentions": [[".", "1s:10m"]]},
        flushInterval=1000,
    )
    d.send(b"queue.depth:25|g")
    wait_until(lambda: "queue" in d.http("/metrics/find?query=stats.gauges.*")[1], what="the gauge")
    path = os.pathsep.join(
        os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    )
    env = f"/usr/bin/env PYTHONPATH={path}"
    command = (
        f"{env} {sys.executable} -m webops check --statsd-config {d.config_path} --gauge queue.depth "
        "--agg max -w $ARG1$ -c $ARG2$"
    )
    nagios = tmp_path / "nagios"
    nagios.mkdir()
    cfg = nagios_config(nagios, command)
    verify = subprocess.run([NAGIOS, "-v", str(cfg)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "Total Errors:   0" in verify.stdout, verify.stdout
    proc = subprocess.Popen([NAGIOS, str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def service_state() -> tuple[str, str] | None:
            status = nagios / "status.dat"
            text = status.read_text() if status.exists() else ""
            for block in re.findall(r"servicestatus \{(.*?)\}", text, re.S):
                fields = dict(re.findall(r"^\s*(\w+)=(.*)$", block, re.M))
                if fields.get("has_been_checked") == "1":
                    return fields["current_state"], fields["plugin_output"] + "|" + fields["performance_data"]
            return None

        state, output = wait_until(service_state, timeout=60, what="nagios to run the check")
    finally:
        stop_process(proc, 30)
    assert state == "2", output  # 25 > 20: CRITICAL, as Nagios recorded it
    assert output.startswith("WEBOPS CHECK CRITICAL - stats.gauges.queue.depth max 25"), output
    assert "'stats.gauges.queue.depth'=25;10;20" in output, output
