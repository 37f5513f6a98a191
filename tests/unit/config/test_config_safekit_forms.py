"""Forms SafeKit accepts in a userconfig.xml that a module brought from SafeKit may use: each one
loads here, with the meaning SafeKit gives it."""

from __future__ import annotations

import pytest

from safekit.checkers.errd import ProcessInfo, evaluate
from safekit.config import ConfigError, parse_module
from safekit.daemon.module_executor import process_rule


def module(errd: str) -> str:
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  {errd}
</service>
</safe>
"""


ORACLE_LIKE = module(
    """<errd polltimer="10">
    <proc name="oracle_pmon" nameregex="ora_pmon_.*" atleast="1" action="stopstart" class="prim"/>
    <proc name="listener" nameregex="tnslsnr" argregex="LISTENER" atleast="1" action="restart" class="prim"/>
  </errd>"""
)

PROCESSES = [
    ProcessInfo(100, "ora_pmon_orcl", ("ora_pmon_orcl",)),
    ProcessInfo(101, "ora_smon_orcl", ("ora_smon_orcl",)),
    ProcessInfo(102, "tnslsnr", ("/u01/app/oracle/bin/tnslsnr", "LISTENER", "-inherit")),
]


def test_proc_with_name_and_nameregex_loads_the_regex_matches_and_the_name_names_the_check() -> None:
    """SafeKit's own Oracle template gives both: the name identifies the check, the regex matches."""
    config, warnings = parse_module(ORACLE_LIKE, "userconfig.xml", env={})
    assert warnings == ()
    assert config.errd is not None
    pmon, listener = config.errd.procs
    assert (pmon.name, pmon.nameregex, pmon.ident) == ("oracle_pmon", "ora_pmon_.*", "oracle_pmon")
    assert (listener.ident, listener.matched_name, listener.argregex) == ("listener", None, "LISTENER")
    rules = [process_rule(proc) for proc in config.errd.procs]
    verdicts = evaluate(rules, PROCESSES)
    # No process is called "oracle_pmon": the regex is what counts, so the check passes ...
    assert [(v.ok, v.count) for v in verdicts] == [(True, 1), (True, 1)]
    # ... and it reports under its name (resource proc.oracle_pmon), not under the regex.
    assert [v.rule.ident for v in verdicts] == ["oracle_pmon", "listener"]
    [gone] = evaluate(rules[:1], PROCESSES[1:])
    assert not gone.ok and gone.reason == "oracle_pmon: 0 running, at least 1 needed"


def test_name_alone_still_matches_the_name_and_nameregex_alone_names_the_check_by_its_regex() -> None:
    config, _ = parse_module(
        module(
            '<errd><proc name="tnslsnr" action="restart" class="prim"/>'
            '<proc nameregex="ora_pmon_.*" action="restart" class="prim"/></errd>'
        ),
        "userconfig.xml",
        env={},
    )
    assert config.errd is not None
    by_name, by_regex = (process_rule(proc) for proc in config.errd.procs)
    assert (by_name.ident, by_name.name, by_name.nameregex) == ("tnslsnr", "tnslsnr", None)
    assert (by_regex.ident, by_regex.name, by_regex.nameregex) == ("ora_pmon_.*", None, "ora_pmon_.*")
    assert [v.count for v in evaluate([by_name, by_regex], PROCESSES)] == [1, 1]


def test_proc_with_neither_name_nor_nameregex_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_module(module('<errd><proc action="restart" class="prim"/></errd>'), "userconfig.xml", env={})
    (message,) = (str(e) for e in caught.value.errors)
    assert message.startswith("userconfig.xml:5: <proc>: give 'name' (the process or service name)")
    assert "or both" in message


# A mirror module as SafeKit's AWS quick start ships it (a comment before the DOCTYPE, the
# heartbeat timings in bare milliseconds, loop_interval in hours, rfs attributes of SafeKit 7).
SAFEKIT_QUICKSTART_MIRROR = """<!-- mirror: real-time file replication and failover -->
<!DOCTYPE safe>
<safe>
 <service mode="mirror" defaultprim="alone" maxloop="3" loop_interval="24" failover="on">
  <heart pulse="700" timeout="30000">
   <heartbeat name="default" ident="flow">
   </heartbeat></heart>
  <user>
  </user>
  <rfs mountover="off" async="second" locktimeout="200" nbrei="3" nbremconn="4">
   <replicated dir="/var/replicated" mode="read_only"/>
  </rfs></service>
</safe>
"""


def test_rfs_mountover_of_safekit_7_loads_with_a_warning_that_it_does_nothing() -> None:
    config, warnings = parse_module(SAFEKIT_QUICKSTART_MIRROR, "userconfig.xml", env={})
    assert config.rfs is not None and config.rfs.replicated[0].dir == "/var/replicated"
    assert config.rfs.locktimeout == 200.0 and config.heart is not None
    assert config.heart.pulse == 0.7 and config.service.loop_interval == 24 * 3600.0
    ignored = {str(w).split("attribute ", 1)[1].split(" ", 1)[0] for w in warnings}
    assert ignored == {"'mountover'", "'nbremconn'"}, [str(w) for w in warnings]
