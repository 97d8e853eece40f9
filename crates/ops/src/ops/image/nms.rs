//! NonMaxSuppression (opsets 10, 11).

use runnx_ir::{Tensor, Value};

use crate::ops::shape::ints_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    // Opset 11 only relaxed the shape inference; the computation is the same.
    reg.add_versions("", "NonMaxSuppression", &[10, 11], build);
}

/// ONNX `NonMaxSuppression`: per batch item and class, greedily keeps the highest-scoring
/// boxes (ties: the lower box index first) whose IoU with every box kept before is at most
/// `iou_threshold`, up to `max_output_boxes_per_class` (absent: none). With a
/// `score_threshold`, only boxes scoring strictly above it are candidates. Boxes are
/// `[y1, x1, y2, x2]` corners in either order, or `[x_center, y_center, width, height]` with
/// `center_point_box = 1`. Output: `[selected, 3]` int64 rows `(batch, class, box)`.
struct Nms {
    center_point_box: bool,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let center = info.attr_int("center_point_box", 0)?;
    if center != 0 && center != 1 {
        return Err(OpError::attribute(
            "center_point_box",
            format!("must be 0 or 1, got {center}"),
        ));
    }
    Ok(Box::new(Nms {
        center_point_box: center == 1,
    }))
}

/// A box as (y_min, x_min, y_max, x_max).
#[derive(Clone, Copy)]
struct Corners([f32; 4]);

impl Corners {
    fn new(b: &[f32], center_point_box: bool) -> Corners {
        if center_point_box {
            let (xc, yc, w, h) = (b[0], b[1], b[2], b[3]);
            Corners([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0])
        } else {
            Corners([
                b[0].min(b[2]),
                b[1].min(b[3]),
                b[0].max(b[2]),
                b[1].max(b[3]),
            ])
        }
    }

    fn area(&self) -> f32 {
        (self.0[2] - self.0[0]) * (self.0[3] - self.0[1])
    }

    /// Whether the IoU of two boxes exceeds `threshold`; degenerate boxes never suppress.
    fn suppresses(&self, other: &Corners, threshold: f32) -> bool {
        let (a, b) = (self.0, other.0);
        let (y0, x0) = (a[0].max(b[0]), a[1].max(b[1]));
        let (y1, x1) = (a[2].min(b[2]), a[3].min(b[3]));
        if x1 <= x0 || y1 <= y0 {
            return false;
        }
        let inter = (y1 - y0) * (x1 - x0);
        let (area_a, area_b) = (self.area(), other.area());
        let union = area_a + area_b - inter;
        if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
            return false;
        }
        inter / union > threshold
    }
}

/// A float scalar input (`iou_threshold`, `score_threshold`), absent or empty as `None`.
fn float_scalar(inputs: &Inputs, index: usize) -> Result<Option<f32>, OpError> {
    match inputs.opt_tensor(index)? {
        None => Ok(None),
        Some(t) => Ok(t
            .as_slice::<f32>()
            .map_err(|_| OpError::input(index, format!("expected float, got {}", t.dtype())))?
            .first()
            .copied()),
    }
}

impl Kernel for Nms {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let boxes_t = inputs.tensor(0)?;
        let scores_t = inputs.tensor(1)?;
        let boxes = inputs.slice::<f32>(0)?;
        let scores = inputs.slice::<f32>(1)?;
        let &[batches, num_boxes, 4] = boxes_t.shape() else {
            return Err(OpError::input(
                0,
                format!(
                    "expected boxes [batch, boxes, 4], got {:?}",
                    boxes_t.shape()
                ),
            ));
        };
        let &[score_batches, classes, score_boxes] = scores_t.shape() else {
            return Err(OpError::input(
                1,
                format!(
                    "expected scores [batch, classes, boxes], got {:?}",
                    scores_t.shape()
                ),
            ));
        };
        if (score_batches, score_boxes) != (batches, num_boxes) {
            return Err(OpError::invalid(format!(
                "boxes {:?} and scores {:?} disagree on batch or box count",
                boxes_t.shape(),
                scores_t.shape()
            )));
        }
        let max_out = match inputs.opt_tensor(2)? {
            Some(t) => ints_input(t, 2)?.first().copied().unwrap_or(0).max(0) as usize,
            None => 0,
        };
        let iou_threshold = float_scalar(&inputs, 3)?.unwrap_or(0.0);
        let score_threshold = float_scalar(&inputs, 4)?;
        if !(0.0..=1.0).contains(&iou_threshold) {
            return Err(OpError::input(
                3,
                format!("iou_threshold {iou_threshold} is not in [0, 1]"),
            ));
        }
        let mut selected: Vec<i64> = Vec::new();
        for b in 0..batches {
            let corners: Vec<Corners> = boxes[b * num_boxes * 4..(b + 1) * num_boxes * 4]
                .chunks(4)
                .map(|c| Corners::new(c, self.center_point_box))
                .collect();
            for class in 0..classes {
                let s = &scores[(b * classes + class) * num_boxes..][..num_boxes];
                let mut candidates: Vec<usize> = (0..num_boxes)
                    .filter(|&i| score_threshold.is_none_or(|t| s[i] > t))
                    .collect();
                // Highest score first; equal scores keep box order.
                candidates.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
                let mut kept: Vec<usize> = Vec::new();
                for i in candidates {
                    if kept.len() >= max_out {
                        break;
                    }
                    if kept
                        .iter()
                        .all(|&k| !corners[i].suppresses(&corners[k], iou_threshold))
                    {
                        kept.push(i);
                        selected.extend([b as i64, class as i64, i as i64]);
                    }
                }
            }
        }
        let rows = selected.len() / 3;
        Ok(vec![Value::Tensor(Tensor::from_vec([rows, 3], selected)?)])
    }
}
