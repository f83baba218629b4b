//! `chaosctl schedule add FILE | list | remove ID`: game-day schedules on a chaosd server. They
//! only exist on a server (chaosd starts the runs), so without `--server` these exit 2.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use chaosd::schedule::Blackout;
use chaosd::schedule::api::{CreateSchedule, ScheduleView};

use super::remote::{Server, failure};
use super::{EXIT_OK, Failure};
use crate::args::{Output, ScheduleAction};

pub async fn run(action: ScheduleAction, server: Option<Server>) -> Result<u8, Failure> {
    let Some(server) = server else {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: schedules live on a chaosd server, which starts their runs: pass --server URL or set CHAOSD_URL"
        )));
    };
    let client = server.client().await?;
    match action {
        ScheduleAction::Add {
            file,
            cron,
            timezone,
            vars,
            labels,
            blackouts,
            output,
        } => {
            let scenario = std::fs::read_to_string(&file)
                .with_context(|| format!("chaosctl: cannot read `{}`", file.display()))
                .map_err(Failure::Invalid)?;
            let blackouts = blackouts
                .iter()
                .map(|text| {
                    serde_saphyr::from_str::<Blackout>(text).map_err(|e| {
                        Failure::Invalid(anyhow!("chaosctl: `--blackout {text}`: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let req = CreateSchedule {
                scenario,
                file: file.file_name().map(|n| n.to_string_lossy().into_owned()),
                cron,
                timezone,
                vars: vars.into_iter().collect::<BTreeMap<_, _>>(),
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                blackouts,
            };
            let created = client.add_schedule(&req).await.map_err(failure)?;
            match output {
                Output::Json => outln!("{}", serde_json::to_string(&created).unwrap_or_default()),
                Output::Text => outln!(
                    "{}\tnext run {}",
                    created.id,
                    created
                        .next_run
                        .map_or_else(|| "never".to_string(), |t| t.to_rfc3339())
                ),
            }
            Ok(EXIT_OK)
        }
        ScheduleAction::List { output } => {
            let list = client.schedules().await.map_err(failure)?;
            match output {
                Output::Json => outln!("{}", serde_json::to_string(&list).unwrap_or_default()),
                Output::Text => print_table(&list.schedules),
            }
            Ok(EXIT_OK)
        }
        ScheduleAction::Remove { id } => {
            let removed = client.remove_schedule(&id).await.map_err(failure)?;
            errln!("chaosctl: schedule {} removed", removed.id);
            Ok(EXIT_OK)
        }
    }
}

fn print_table(schedules: &[ScheduleView]) {
    if schedules.is_empty() {
        errln!("no schedules");
        return;
    }
    let rows: Vec<[String; 6]> = schedules
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.scenario.clone(),
                s.cron.clone(),
                s.timezone.clone(),
                s.next_run
                    .map_or_else(|| "never".into(), |t| t.to_rfc3339()),
                match (&s.last_run_id, &s.last_error) {
                    (_, Some(err)) => format!("refused: {err}"),
                    (Some(run), None) => run.clone(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    let head = ["ID", "SCENARIO", "CRON", "TIMEZONE", "NEXT RUN", "LAST RUN"];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        outln!("{}", out.trim_end());
    };
    line(head.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
