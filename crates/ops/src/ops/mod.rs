//! Op implementations, one module per family. Each module's `register` lists its ops.

mod cast;
mod constant;
pub(crate) mod control;
mod conv;
mod elementwise;
mod image;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod resize;
mod sequence;
mod shape;
mod softmax;
mod unary;

use crate::Registry;

pub(crate) fn register_all(reg: &mut Registry) {
    cast::register(reg);
    constant::register(reg);
    control::register(reg);
    conv::register(reg);
    elementwise::register(reg);
    image::register(reg);
    matmul::register(reg);
    norm::register(reg);
    pool::register(reg);
    reduce::register(reg);
    resize::register(reg);
    sequence::register(reg);
    shape::register(reg);
    softmax::register(reg);
    unary::register(reg);
}
