//! The bodies a request's journey carries, in one place so that the stages that hand them on
//! (listener, gateway, judge, upstream) need not know one another: the client's body as read
//! ([`ClientBody`], bounded in time by [`stall`]), the body sent to a member ([`UpstreamBody`]),
//! and the body of every answer ([`ResponseBody`]).

mod stall;
mod tracked;
mod upstream;
mod wire;

pub use stall::BodyError;
pub(crate) use tracked::{Activity, InFlight, Limits};
pub use tracked::{ClientBody, Source, Tracked, PARK_AFTER};
pub use upstream::UpstreamBody;
pub use wire::{Broken, Feed, FeedState, WireBody};

use bytes::Bytes;
use http_body_util::{Either, Full};

use crate::access::Logged;
use crate::identity::Learning;

/// The body of every answer: the member's own (`M`, as the upstream client reads it), streamed
/// (and read on the way when it can say who an application's user is), or one ringfence wrote;
/// with the request's access line, when the access log is on. The gateway names `M`.
pub type ResponseBody<M> = Logged<Answer<M>>;
pub(crate) type Answer<M> = Either<Learning<M>, Full<Bytes>>;
