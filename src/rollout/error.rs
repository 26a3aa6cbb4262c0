//! What can stop a rollout change, each mapped to the status the admin API
//! answers with (`admin::reply::control_error`).

use super::persist::PersistError;
use super::state::RolloutState;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request makes no sense (400).
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the current phase (409).
    #[error("{0}")]
    Conflict(String),
    /// Another change reached the fleet store first (409, with the state
    /// as it is now).
    #[error("{message}")]
    Lost {
        message: String,
        current: Box<RolloutState>,
        epoch: u64,
    },
    /// What the call names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The state could not be saved (500).
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A gate hook has not agreed (409): the plan waits on it.
    #[error("{0}")]
    Gated(String),
    /// The fleet store cannot be reached: nothing changed (503).
    #[error("{0}")]
    Unavailable(String),
}
