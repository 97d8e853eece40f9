//! Op implementations, one module per family. Each module's `register` lists its ops.

mod bitcast;
mod attention;
mod cast;
mod constant;
pub(crate) mod control;
mod conv;
mod einsum;
mod elementwise;
mod loss;
mod linalg;
mod matmul;
mod ml;
mod norm;
mod pool;
mod random;
mod quant;
mod reduce;
mod rnn;
mod sequence;
mod shape;
mod signal;
mod softmax;
mod training;
mod string;
mod unary;

use crate::Registry;

pub(crate) fn register_all(reg: &mut Registry) {
    bitcast::register(reg);
    attention::register(reg);
    cast::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    einsum::register(reg);
    elementwise::register(reg);
    loss::register(reg);
    linalg::register(reg);
    matmul::register(reg);
    ml::register(reg);
    norm::register(reg);
    pool::register(reg);
    random::register(reg);
    quant::register(reg);
    reduce::register(reg);
    rnn::register(reg);
    sequence::register(reg);
    shape::register(reg);
    signal::register(reg);
    softmax::register(reg);
    training::register(reg);
    string::register(reg);
    unary::register(reg);
}
