//! Op implementations, one module per family. Each module's `register` lists its ops.

mod attention;
mod bitcast;
mod cast;
mod constant;
pub(crate) mod control;
mod conv;
mod einsum;
mod elementwise;
mod image;
mod linalg;
mod loss;
mod matmul;
mod ml;
mod norm;
mod pool;
mod quant;
mod random;
mod reduce;
mod resize;
mod rnn;
mod sequence;
mod shape;
mod signal;
mod softmax;
mod string;
mod training;
mod unary;

use crate::Registry;

pub(crate) fn register_all(reg: &mut Registry) {
    attention::register(reg);
    bitcast::register(reg);
    cast::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    einsum::register(reg);
    elementwise::register(reg);
    image::register(reg);
    linalg::register(reg);
    loss::register(reg);
    matmul::register(reg);
    ml::register(reg);
    norm::register(reg);
    pool::register(reg);
    quant::register(reg);
    random::register(reg);
    reduce::register(reg);
    resize::register(reg);
    rnn::register(reg);
    sequence::register(reg);
    shape::register(reg);
    signal::register(reg);
    softmax::register(reg);
    string::register(reg);
    training::register(reg);
    unary::register(reg);
}
