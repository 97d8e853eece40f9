//! Op implementations, one module per family. Each module's `register` lists its ops.

mod cast;
mod constant;
pub(crate) mod control;
mod conv;
mod elementwise;
mod matmul;
mod ml;
mod norm;
mod pool;
mod reduce;
mod sequence;
mod shape;
mod signal;
mod softmax;
mod string;
mod unary;

use crate::Registry;

pub(crate) fn register_all(reg: &mut Registry) {
    cast::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    elementwise::register(reg);
    matmul::register(reg);
    ml::register(reg);
    norm::register(reg);
    pool::register(reg);
    reduce::register(reg);
    sequence::register(reg);
    shape::register(reg);
    signal::register(reg);
    softmax::register(reg);
    string::register(reg);
    unary::register(reg);
}
