//! The answer a `manual` step waits for. The engine asks; whoever has the run's `Answers` (the
//! terminal, the answer file `chaosctl confirm` writes, chaosd's `confirm`/`refuse` routes)
//! answers. Only the question that is open can be answered, once: an answer that comes when
//! nothing waits is refused, so it can never carry over to a later step.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// What a `manual` step asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The step's index, from 0.
    pub step: usize,
    pub name: String,
    pub prompt: String,
    pub asked_at: DateTime<Utc>,
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub confirmed: bool,
    pub by: Option<String>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTaken {
    #[error("the run is not waiting for an answer")]
    NotWaiting,
    #[error("the run waits on step {waiting}, not step {given}")]
    OtherStep { waiting: usize, given: usize },
    #[error("step {0} was answered already")]
    Answered(usize),
}

/// One run's open question and its answer.
#[derive(Debug, Default)]
pub struct Answers {
    state: Mutex<State>,
    answered: Notify,
}

#[derive(Debug, Default)]
struct State {
    open: Option<Question>,
    answer: Option<Answer>,
}

impl Answers {
    /// The question waiting for an answer, if any.
    pub fn waiting(&self) -> Option<Question> {
        let state = self.state.lock().expect("answers lock");
        state.answer.is_none().then(|| state.open.clone()).flatten()
    }

    /// Answers the open question; `step` (from 0), when given, must be the one that waits, so a
    /// late answer meant for an earlier step never answers the next one.
    pub fn answer(&self, step: Option<usize>, answer: Answer) -> Result<Question, NotTaken> {
        let mut state = self.state.lock().expect("answers lock");
        let Some(open) = state.open.clone() else {
            return Err(NotTaken::NotWaiting);
        };
        if let Some(given) = step
            && given != open.step
        {
            return Err(NotTaken::OtherStep {
                waiting: open.step,
                given,
            });
        }
        if state.answer.is_some() {
            return Err(NotTaken::Answered(open.step));
        }
        state.answer = Some(answer);
        // `notify_one` keeps a permit when the engine is not yet waiting, so no answer is lost.
        self.answered.notify_one();
        Ok(open)
    }

    pub(crate) fn ask(&self, question: Question) {
        let mut state = self.state.lock().expect("answers lock");
        state.open = Some(question);
        state.answer = None;
    }

    /// Closes the question: later answers are refused. Returns an answer that came in but was
    /// not yet taken (it raced the timeout), so that whoever was told "taken" is not contradicted.
    pub(crate) fn close(&self) -> Option<Answer> {
        let mut state = self.state.lock().expect("answers lock");
        state.open = None;
        state.answer.take()
    }

    pub(crate) async fn answered(&self) -> Answer {
        loop {
            if let Some(answer) = self.state.lock().expect("answers lock").answer.clone() {
                return answer;
            }
            self.answered.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes() -> Answer {
        Answer {
            confirmed: true,
            by: Some("ana".into()),
            reason: None,
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn only_the_open_question_takes_one_answer() {
        let answers = Answers::default();
        assert_eq!(answers.answer(None, yes()), Err(NotTaken::NotWaiting));
        answers.ask(Question {
            step: 2,
            name: "check".into(),
            prompt: "ok?".into(),
            asked_at: Utc::now(),
        });
        assert_eq!(answers.waiting().map(|q| q.step), Some(2));
        assert_eq!(
            answers.answer(Some(1), yes()),
            Err(NotTaken::OtherStep {
                waiting: 2,
                given: 1
            })
        );
        assert!(answers.answer(Some(2), yes()).is_ok());
        assert_eq!(answers.answer(None, yes()), Err(NotTaken::Answered(2)));
        assert_eq!(answers.waiting(), None);
        assert!(answers.answered().await.confirmed);
        assert!(answers.close().is_some_and(|a| a.confirmed));
        assert_eq!(answers.answer(None, yes()), Err(NotTaken::NotWaiting));
    }
}
