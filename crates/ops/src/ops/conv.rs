//! (to be written)

use crate::Registry;

pub(crate) fn register(_reg: &mut Registry) {}
