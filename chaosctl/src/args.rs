//! The command line as clap sees it. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// The command line, as `Args::parse()` reads it, but keeping clap's description of every
/// subcommand instead of freeing it: the process ends soon after a run, and the freeing was ~3% of
/// a short run's instructions, on the way to its start.
pub fn parse() -> Args {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Args::command();
    let mut matches = command.get_matches_mut();
    let args = Args::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|err| err.format(&mut command).exit());
    std::mem::forget(command);
    args
}

#[derive(Debug, Parser)]
#[command(
    name = "chaosctl",
    version,
    about = "Run game days and chaos experiments: inject faults, watch a steady-state hypothesis, revert everything, report",
    after_help = "Exit codes of `run`: 0 passed, 1 deviated, 2 invalid, 3 aborted, 4 not steady, 5 error, 6 faults may be left in place.\nOther commands: 0 success, 2 invalid input, 5 failure."
)]
pub struct Args {
    /// Where the run history and the local agent's fault journal live.
    #[arg(long, global = true, env = "CHAOS_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// A chaosd server to send `run`, `runs`, `report`, `diff`, `abort`, `halt` and `resume` to; without
    /// it chaosctl does them here. Several instances sharing a store: URLs separated by commas,
    /// the first that answers is used.
    #[arg(long, global = true, env = "CHAOSD_URL", value_name = "URL")]
    pub server: Option<String>,

    /// A file holding chaosd's API token (else the CHAOSD_TOKEN environment variable).
    #[arg(long, global = true, value_name = "F")]
    pub token_file: Option<PathBuf>,

    /// The CA (or self-signed certificate) to trust for an https:// --server.
    #[arg(long, global = true, value_name = "F")]
    pub ca_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check scenario files without touching any host.
    Validate {
        /// Scenario files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write a commented starting scenario for a service: an http probe of URL and a process
    /// probe of NAME as the hypothesis, a kill of one NAME process, objectives. It validates and
    /// runs as written; its comments say what to change and what to try next.
    Init {
        /// The service's URL that answers when it is healthy (`http://127.0.0.1:8080/health`).
        #[arg(long, value_name = "URL")]
        url: String,
        /// The name of the service's processes, as `/proc/PID/comm` shows it (`nginx`).
        #[arg(long, value_name = "NAME")]
        process: String,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite the -o file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
    /// Turn another tool's experiment into a scenario: what maps becomes probes, steps and
    /// teardown; what does not is listed in the file's comments and on stderr, with exit 5 unless
    /// --partial. The scenario is checked as `validate` would before it is written.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Print the JSON Schema of the scenario format, for editors (yaml-language-server, VS
    /// Code's YAML extension): unknown keys, misplaced sections and plainly wrong values are
    /// marked as you type. `validate` still judges values, names and limits.
    Schema,
    /// Print a completion script for a shell: `source <(chaosctl completions bash)`, or save it
    /// where the shell loads completions (bash: /etc/bash_completion.d/chaosctl; zsh: a
    /// `_chaosctl` file in $fpath; fish: ~/.config/fish/completions/chaosctl.fish).
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: CompletionShell,
    },
    /// Print a man page (roff), made from the same definitions as `--help`: chaosctl's
    /// (section 1), or chaosd's or chaos-agent's (section 8): `chaosctl man chaosd > chaosd.8`.
    Man {
        /// Whose page.
        #[arg(value_enum, default_value = "chaosctl", value_name = "PROGRAM")]
        program: ManPage,
    },
    /// Show what a run would do: hosts, picks, steps, timings. Injects nothing.
    Plan {
        /// The scenario file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// The seed for random picks (default: the file's, else a random one).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run a scenario: set up, check, inject, observe, revert, tear down, report.
    Run(RunArgs),
    /// Run a monkey file: its fault at random times (with the seed), each after a steady-state
    /// check, until Ctrl-C or --for. Exit codes as `run`; --for running out is a normal end.
    Monkey(MonkeyArgs),
    /// List past runs, newest first.
    Runs {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a stored report.
    Report {
        /// A run id, a unique prefix of one, its random suffix (after the dash), or `latest`.
        #[arg(value_name = "RUN")]
        run: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Two runs side by side: verdicts, each step's status and impact per probe and host, and
    /// what differs. Runs of one scenario or of two.
    Diff {
        /// Run A: a run id, a unique prefix of one, its random suffix (after the dash), or
        /// `latest`.
        #[arg(value_name = "RUN_A")]
        run_a: String,
        /// Run B, the same way.
        #[arg(value_name = "RUN_B")]
        run_b: String,
        /// `text` (aligned columns), `json` (schema `chaos.diff/v1`) or `html` (one
        /// self-contained page).
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Break glass: revert every fault the local journal holds, from any run, and with
    /// --inventory every fault every agent there holds.
    Revert {
        /// Revert all of them (required, so nobody reverts by accident).
        #[arg(long, required = true)]
        all: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Stop a run on the chaosd server (--server); every fault is reverted. Exit 0 once asked.
    Abort {
        /// A run id, a unique prefix of one, its random suffix (after the dash), or `latest`.
        #[arg(value_name = "RUN")]
        run: String,
    },
    /// Confirm the `manual` step a run waits on: the run goes on. Works on a local run (from
    /// another terminal, through the state directory) and with --server.
    Confirm {
        /// A run id, a unique prefix of one, its random suffix (after the dash), or `latest`.
        #[arg(value_name = "RUN")]
        run: String,
        /// Who answers, for the report (default: your user name).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Refuse the `manual` step a run waits on: the step and the run end `deviated`.
    Refuse {
        /// A run id, a unique prefix of one, its random suffix (after the dash), or `latest`.
        #[arg(value_name = "RUN")]
        run: String,
        /// Why, for the report.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Who answers, for the report (default: your user name).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Abort every run on the chaosd server (--server) and refuse new ones until `resume`.
    Halt,
    /// Let the chaosd server (--server) accept runs again after a `halt`.
    Resume,
    /// Each agent of an inventory: health, version, capabilities, active faults.
    Agents {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Game-day schedules on the chaosd server (--server): add, list, remove.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// A CA for your agents and controllers, and the certificates it signs (TLS, mutual TLS).
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A Chaos Toolkit experiment (JSON, or YAML): the hypothesis's http and process probes
    /// with their tolerances, the method's process actions as steps, the rollbacks as teardown,
    /// configuration and secrets as `${NAME}` variables (no secret's value is written).
    Chaostoolkit {
        /// The experiment file (`experiment.json`, `experiment.yaml`).
        #[arg(value_name = "EXPERIMENT")]
        file: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite the -o file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
        /// Exit 0 even when parts of the experiment were not imported (they are listed either
        /// way).
        #[arg(long)]
        partial: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Make a CA: DIR/ca.pem (the certificate to trust) and DIR/ca.key (mode 0600; keep it off
    /// the hosts).
    Init {
        /// The folder for the CA and the certificates it issues (created, mode 0700).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// How many days the CA is valid.
        #[arg(long, value_name = "N", default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue DIR/NAME.pem and DIR/NAME.key (mode 0600), signed by DIR's CA.
    Issue {
        /// The folder holding the CA (`chaosctl certs init DIR`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The files' name and the certificate's common name (`agent-1`).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// An IP address or DNS name the certificate is valid for: every address clients use to
        /// reach an agent or chaosd (repeatable; several values may follow one --san).
        #[arg(long = "san", value_name = "ADDR_OR_DNS", num_args = 1..)]
        sans: Vec<String>,
        /// What the certificate is for: `agent` serves (serverAuth), `controller` connects to
        /// agents (clientAuth), `chaosd` does both.
        #[arg(long, value_enum)]
        role: CertRole,
        /// How many days the certificate is valid.
        #[arg(long, value_name = "N", default_value_t = 365)]
        days: u32,
        /// Replace an existing NAME.pem and NAME.key.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertRole {
    Agent,
    Controller,
    Chaosd,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Run FILE on the server at the times of a cron expression (else the file's `schedule:`).
    Add {
        /// The scenario file; its text is sent, and submitted again at each due time.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A cron expression: 5 fields, or 6 with seconds first (`"0 10 * * TUE"`).
        #[arg(long, value_name = "EXPR")]
        cron: Option<String>,
        /// The cron's time zone, an IANA name (default: the file's, else UTC).
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
        /// Set a `${NAME}` variable for every run (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_key_value)]
        vars: Vec<(String, String)>,
        /// A label for every run, with `schedule=ID` (repeatable).
        #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
        labels: Vec<(String, String)>,
        /// No run starts in this window (repeatable): `{from: T, to: T}` (RFC 3339) or
        /// `{days: [sat, sun], hours: "17:00-09:00", timezone: TZ}`.
        #[arg(long = "blackout", value_name = "YAML")]
        blackouts: Vec<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The server's schedules, with their next run.
    List {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove a schedule; runs it started go on.
    Remove {
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// How scenario files are read.
#[derive(Debug, Clone, ClapArgs)]
pub struct LoadArgs {
    /// Set a `${NAME}` variable (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub vars: Vec<(String, String)>,
    /// Hosts and targets to add to the scenario's own.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct RunArgs {
    /// The scenario file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The seed for random picks (default: the file's, else a random one).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// Do everything but inject: setup, preflight and checks run; faults are recorded as skipped.
    // Listed between `--report-dir` and `--yes` of `launch`: options of one display order are
    // listed by name, and `dry-run` comes before `y`.
    #[arg(long, display_order = LaunchArgs::YES_DISPLAY_ORDER)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, ClapArgs)]
#[command(mut_arg("yes", |yes| yes.help("Do not ask before starting")))]
pub struct MonkeyArgs {
    /// The monkey file (`monkey:` instead of `steps:`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stop after this long (`90s`, `8h`, `1h30m`), a normal end; default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub run_for: Option<std::time::Duration>,
    /// The seed of the fault times and picks (default: the file's, else a random one).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// What `run` and `monkey` share: how the run is recorded, whether to ask, how it is shown.
#[derive(Debug, Clone, ClapArgs)]
pub struct LaunchArgs {
    /// A label recorded in the report and the history (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Where report folders go.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "chaos-reports",
        env = "CHAOS_REPORT_DIR"
    )]
    pub report_dir: PathBuf,
    /// Do not ask before injecting.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// `text` for people (live progress on a terminal), `json` for machines (JSON lines).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl LaunchArgs {
    /// `--yes`'s place in `run --help`: after `--var`, `--inventory`, `--seed`, `--label` and
    /// `--report-dir`.
    const YES_DISPLAY_ORDER: usize = 5;
}

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match chaosd::scenario::parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0s".to_string()),
        d => Ok(d),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Json,
    Md,
    Html,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    Html,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn monkey_takes_a_duration_for_for() {
        let args =
            Args::try_parse_from(["chaosctl", "monkey", "m.yaml", "--for", "1m30s"]).unwrap();
        let Command::Monkey(m) = args.command else {
            panic!("not monkey")
        };
        assert_eq!(m.run_for, Some(std::time::Duration::from_secs(90)));
        assert!(Args::try_parse_from(["chaosctl", "monkey", "m.yaml", "--for", "10"]).is_err());
        assert!(Args::try_parse_from(["chaosctl", "monkey", "m.yaml", "--for", "0s"]).is_err());
    }

    #[test]
    fn run_and_monkey_list_their_shared_flags_where_they_always_did() {
        let help = |name: &str| {
            let mut command = Args::command();
            command
                .find_subcommand_mut(name)
                .expect("a subcommand")
                .render_help()
                .to_string()
        };
        let run = help("run");
        let at = |flag: &str| run.find(flag).unwrap_or_else(|| panic!("{flag} in\n{run}"));
        assert!(at("--report-dir") < at("--dry-run"), "{run}");
        assert!(at("--dry-run") < at("--yes"), "{run}");
        assert!(at("--yes") < at("--output"), "{run}");
        assert!(run.contains("Do not ask before injecting\n"), "{run}");
        let monkey = help("monkey");
        assert!(monkey.contains("Do not ask before starting\n"), "{monkey}");
        assert!(!monkey.contains("--dry-run"), "{monkey}");
    }

    #[test]
    fn key_values_need_an_equals_sign() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value("=b").is_err());
    }
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The programs `man` writes a page for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ManPage {
    Chaosctl,
    Chaosd,
    #[value(name = "chaos-agent")]
    ChaosAgent,
}
