"""Directive parsing: every option, every time format, units, errors naming the line."""

from __future__ import annotations

import pytest

from terminals.cli.directives import (
    InputFile,
    build_spec,
    parse_memory_mb,
    parse_options,
    parse_script,
    parse_time_s,
)
from terminals.cli.errors import DirectiveError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30 * 60),
        ("30:15", 30 * 60 + 15),
        ("2:03:04", 2 * 3600 + 3 * 60 + 4),
        ("1-02", 26 * 3600),
        ("1-02:30", 26 * 3600 + 30 * 60),
        ("1-02:30:05", 26 * 3600 + 30 * 60 + 5),
        ("0:45", 45),
    ],
)
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert parse_time_s(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "1-2:3:4:5", "-5", "0", "1h", "1-"])
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_s(text)


@pytest.mark.parametrize(
    ("text", "mb"),
    [("512", 512), ("512M", 512), ("4G", 4096), ("1T", 1024 * 1024), ("1536K", 2), ("2g", 2048)],
)
def test_memory_units(text: str, mb: int) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("text", ["", "4X", "-1G", "G", "1.5G"])
def test_malformed_memory_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory_mb(text)


SCRIPT = """#!/bin/bash
# an ordinary comment
#SKYPORT --nodes=2 --ntasks-per-node=3 -c 4 --mem=8G
#SKYPORT --gpus-per-node 1 --time=1:00:00 -J train
#SKYPORT --input=data.csv --input=/tmp/w.bin:weights/w.bin --output=result.txt
#SKYPORT --export=A=1,B=two --env C=x,y --gate local --priority=-5

srun ./train
#SKYPORT --nodes=99
"""


def test_every_skyport_option_reaches_the_spec() -> None:
    request = parse_script(SCRIPT)
    spec = build_spec(SCRIPT, request)
    assert (spec.nodes, spec.tasks_per_node, spec.cpus_per_task) == (2, 3, 4)
    assert spec.memory_mb_per_node == 8192
    assert spec.gpus_per_node == 1
    assert spec.time_limit_s == 3600
    assert spec.name == "train"
    assert spec.outputs == ("result.txt",)
    assert spec.env == {"A": "1", "B": "two", "C": "x,y"}
    assert spec.gate == "local"
    assert spec.priority == -5
    assert request.inputs == [
        InputFile("data.csv", "data.csv"),
        InputFile("/tmp/w.bin", "weights/w.bin"),
    ]


def test_directives_stop_at_the_first_command() -> None:
    assert parse_script(SCRIPT).values["nodes"] == 2


def test_sbatch_lines_use_the_same_names_and_gres() -> None:
    script = "#!/bin/sh\n#SBATCH -N 3\n#SBATCH --gres=gpu:2 -t 10 --job-name=x # note\ntrue\n"
    spec = build_spec(script, parse_script(script))
    assert (spec.nodes, spec.gpus_per_node, spec.time_limit_s, spec.name) == (3, 2, 600, "x")


def test_sbatch_output_is_reported_not_applied() -> None:
    request = parse_script("#SBATCH --output=slurm-%j.out -e err.txt\n")
    assert "outputs" not in request.values
    assert len(request.warnings) == 2
    assert "line 1" in request.warnings[0]


def test_legacy_swm_keywords() -> None:
    script = "#SWM nodes 2\n#SWM ncpus 8\n#SWM mem 1G\n#SWM time 5\n#SWM name old\n"
    script += "#SWM input a.txt\n#SWM output b.txt\n"
    request = parse_script(script)
    spec = build_spec(script, request)
    assert (spec.nodes, spec.cpus_per_task, spec.memory_mb_per_node) == (2, 8, 1024)
    assert (spec.time_limit_s, spec.name, spec.outputs) == (300, "old", ("b.txt",))
    assert request.inputs == [InputFile("a.txt", "a.txt")]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("#SKYPORT --frobnicate=1", "unknown option --frobnicate"),
        ("#SBATCH --partition=gpu", "unknown option --partition"),
        ("#SKYPORT -Z 3", "unknown option -Z"),
        ("#SKYPORT --nodes=-2", "--nodes"),
        ("#SKYPORT --nodes=two", "not a whole number"),
        ("#SKYPORT --nodes=2-4", "ranges"),
        ("#SKYPORT --mem=lots", "memory size"),
        ("#SKYPORT --time=forever", "not a time"),
        ("#SKYPORT --gres=fpga:1", "gpu:N"),
        ("#SKYPORT --export=ALL", "VAR=VALUE"),
        ("#SKYPORT --input=../etc/passwd:../x", "'..'"),
        ("#SKYPORT --output=/abs", "absolute"),
        ("#SKYPORT --nodes", "needs a value"),
        ("#SKYPORT nodes=2", "expected an option"),
        ("#SKYPORT --job-name='open", "cannot split"),
        ("#SWM flavor m1.small", "unknown #SWM keyword"),
        ("#SWM nodes", "exactly one value"),
    ],
)
def test_bad_directives_name_their_line(line: str, needle: str) -> None:
    script = f"#!/bin/sh\n\n{line}\necho\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert err.value.where.startswith("line 3: ")
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("#SKYPORT --nodes=5000", "--nodes"),
        ("#SKYPORT --gpus-per-node=65", "--gpus-per-node"),
        ("#SKYPORT --time=400-00", "--time"),
        ("#SKYPORT --priority=20000", "--priority"),
        ("#SKYPORT --env SKYPORT_X=1", "reserved"),
    ],
)
def test_schema_limits_name_the_line(line: str, option: str) -> None:
    script = f"{line}\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert option in str(err.value)


@pytest.mark.parametrize(
    "line",
    [
        "#SKYPORT --time=\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "#SWM time \u00b2",
        "#SKYPORT --time=1-\u00b2",
        "#SKYPORT --time=\u0663",  # Arabic-Indic three: \\d and int() take it as 3
        "#SKYPORT --nodes=\u0663",
        "#SKYPORT --cpus-per-task=\u00b2",
        "#SKYPORT --gpus-per-node=\u0663",
        "#SKYPORT --priority=\u0663",
        "#SKYPORT --mem=\u0663G",
        "#SKYPORT --mem=4\u212a",  # Kelvin sign: matched K case-insensitively, then a KeyError
        "#SKYPORT --gres=gpu:\u0663",
        "#SKYPORT --nodes=" + "9" * 5000,  # int() raises past 4300 digits
        "#SKYPORT --time=" + "9" * 5000,
        "#SKYPORT --mem=" + "9" * 5000 + "G",
        "#SKYPORT --priority=-" + "9" * 5000,
    ],
)
def test_numbers_are_ascii_digits_and_errors_name_the_line(line: str) -> None:
    script = f"#!/bin/sh\n{line}\necho\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert err.value.where == f"line 2: {line}"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("#SKYPORT --export=A-B=1", "invalid environment variable name 'A-B'"),
        ("#SKYPORT --export=OK=1,9LIVES=1", "invalid environment variable name '9LIVES'"),
        ("#SKYPORT --env=\u00c9T\u00c9=1", "invalid environment variable name"),
        ("#SKYPORT --env=" + "V" * 129 + "=1", "invalid environment variable name"),
        ("#SKYPORT --env=SKYPORT_JOB_ID=1", "'SKYPORT_JOB_ID' is reserved"),
        ("#SKYPORT --export=A=1,SKYPORT_X=2", "'SKYPORT_X' is reserved"),
    ],
)
def test_bad_environment_names_name_the_line(line: str, needle: str) -> None:
    script = f"#!/bin/sh\n{line}\necho\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert err.value.where == f"line 2: {line}"
    assert needle in err.value.message


def test_bad_environment_names_on_the_command_line_name_the_option() -> None:
    with pytest.raises(DirectiveError) as err:
        parse_options([("export", "A-B=1")])
    assert err.value.where == "command line --export"
    with pytest.raises(DirectiveError) as err:
        parse_options([("env", "SKYPORT_JOB_ID=1")])
    assert err.value.where == "command line --env"


def test_too_many_variables_names_the_line_that_set_them() -> None:
    first = ",".join(f"A{i}=1" for i in range(300))
    second = ",".join(f"B{i}=1" for i in range(300))
    script = f"#SKYPORT --export={first}\n#SKYPORT --export={second}\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert err.value.where == f"line 2: #SKYPORT --export={second}"


def test_schema_limit_names_the_line_that_set_it() -> None:
    script = "#SKYPORT -J ok\n#SKYPORT --nodes=5000\n"
    with pytest.raises(DirectiveError) as err:
        build_spec(script, parse_script(script))
    assert err.value.where == "line 2: #SKYPORT --nodes=5000"


def test_oversized_script_is_one_clear_error() -> None:
    script = "#!/bin/sh\n" + "#" * (600 * 1024)
    with pytest.raises(DirectiveError, match="too large"):
        build_spec(script, parse_script(script))


def test_command_line_overrides_directives() -> None:
    script = "#SKYPORT --nodes=2 -J a --output=x --export=A=1,B=2\n"
    cli = parse_options([("nodes", "4"), ("output", "y"), ("env", "B=3")])
    request = parse_script(script).override(cli)
    spec = build_spec(script, request)
    assert (spec.nodes, spec.name, spec.outputs) == (4, "a", ("y",))
    assert spec.env == {"A": "1", "B": "3"}
    assert request.origin["nodes"] == "command line --nodes"


def test_command_line_errors_name_the_option() -> None:
    with pytest.raises(DirectiveError, match="command line --mem"):
        parse_options([("mem", "huge")])


def test_a_script_without_directives_gets_defaults() -> None:
    spec = build_spec("echo hi\n", parse_script("echo hi\n"))
    assert (spec.nodes, spec.time_limit_s, spec.name) == (1, 3600, "job")


def test_the_account_to_charge_is_a_directive_as_in_sbatch() -> None:
    script = "#!/bin/sh\n#SBATCH -A physics\ntrue\n"
    assert build_spec(script, parse_script(script)).account == "physics"
    assert build_spec("true\n", parse_script("true\n")).account is None  # the user's own
    with pytest.raises(DirectiveError, match="line 1.*not an account name"):
        parse_script("#SKYPORT --account=phys/ics\n")


def test_dependencies_use_slurms_syntax() -> None:
    script = "#!/bin/sh\n#SBATCH --dependency=afterok:3:4,afterany:5\ntrue\n"
    deps = build_spec(script, parse_script(script)).dependencies
    assert [(d.kind.value, d.job_id) for d in deps] == [
        ("afterok", "3"),
        ("afterok", "4"),
        ("afterany", "5"),
    ]
    short = "#SKYPORT -d afternotok:7\n"
    assert [d.job_id for d in build_spec(short, parse_script(short)).dependencies] == ["7"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("afterok:3?afterany:4", "not supported"),
        ("after:3", "not one of"),
        ("afterok", "names no job"),
        ("afterok:x3", "not a job id"),
    ],
)
def test_malformed_dependencies_are_refused(text: str, problem: str) -> None:
    with pytest.raises(DirectiveError, match=f"line 1.*{problem}"):
        parse_script(f"#SKYPORT --dependency={text}\n")


def test_a_maximum_price_per_hour_is_a_directive() -> None:
    script = "#!/bin/sh\n#SKYPORT --max-price=2.5\ntrue\n"
    assert build_spec(script, parse_script(script)).max_price_per_hour == 2.5
    assert build_spec("true\n", parse_script("true\n")).max_price_per_hour is None
    for bad in ("-1", "nan", "cheap"):
        with pytest.raises(DirectiveError, match="line 1.*price"):
            parse_script(f"#SKYPORT --max-price={bad}\n")
