//! Op implementations, one module per family. Each module's `register` lists its ops.

mod bitcast;
mod cast;
mod constant;
pub(crate) mod control;
mod conv;
mod einsum;
mod elementwise;
mod linalg;
mod matmul;
mod norm;
mod pool;
mod quant;
mod reduce;
mod sequence;
mod shape;
mod softmax;
mod unary;

use crate::Registry;

pub(crate) fn register_all(reg: &mut Registry) {
    bitcast::register(reg);
    cast::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    einsum::register(reg);
    elementwise::register(reg);
    linalg::register(reg);
    matmul::register(reg);
    norm::register(reg);
    pool::register(reg);
    quant::register(reg);
    reduce::register(reg);
    sequence::register(reg);
    shape::register(reg);
    softmax::register(reg);
    unary::register(reg);
}
