//! The default task: a procedurally drawn 2 x 2 grid of coloured shapes and a question that
//! needs the picture (how many red shapes; how many circles; is there a blue triangle; what
//! colour is the shape at the top left), with a verifiable one-word answer. The target
//! response is `<think>` + a sentence the question alone determines + `</think>\boxed{answer}`,
//! so its template tokens are text-predictable and its answer tokens are the visually
//! grounded ones: each example says which characters those are, to check TVD against.

use crate::image::processor::RgbImage;
use crate::rng::Rng;

pub const COLOURS: [(&str, [u8; 3]); 4] = [("red", [220, 40, 40]), ("green", [40, 170, 60]), ("blue", [40, 80, 220]), ("yellow", [230, 200, 30])];
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
pub const POSITIONS: [&str; 4] = ["top left", "top right", "bottom left", "bottom right"];
/// Pixels per cell: two 14-pixel patches, so one merged image token per cell.
pub const CELL: usize = 28;
pub const GRID: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub shape: usize,
    pub colour: usize,
}

#[derive(Clone, Debug)]
pub struct Scene {
    pub cells: [Option<Item>; GRID * GRID],
}

/// One example: the picture, the question, the ground-truth answer and the target response.
#[derive(Clone, Debug)]
pub struct Example {
    pub image: RgbImage,
    pub question: String,
    pub answer: String,
    pub response: String,
    /// Byte range of the answer inside `response`: the visually grounded part.
    pub grounded: std::ops::Range<usize>,
}

impl Scene {
    pub fn random(rng: &mut Rng) -> Scene {
        let mut cells = [None; GRID * GRID];
        for c in cells.iter_mut() {
            if rng.uniform() < 0.6 {
                *c = Some(Item { shape: rng.below(SHAPES.len()), colour: rng.below(COLOURS.len()) });
            }
        }
        Scene { cells }
    }

    /// 56 x 56 RGB on a light background; each shape centred in its cell with a jitter.
    pub fn render(&self, rng: &mut Rng) -> RgbImage {
        let side = CELL * GRID;
        let mut data = vec![235u8; side * side * 3];
        for (i, cell) in self.cells.iter().enumerate() {
            let Some(item) = cell else { continue };
            let (cy, cx) = ((i / GRID * CELL + CELL / 2) as f32, (i % GRID * CELL + CELL / 2) as f32);
            let (jy, jx) = (rng.range(-2.0, 2.0), rng.range(-2.0, 2.0));
            let r = rng.range(8.0, 11.0);
            let rgb = COLOURS[item.colour].1;
            for y in i / GRID * CELL..(i / GRID + 1) * CELL {
                for x in i % GRID * CELL..(i % GRID + 1) * CELL {
                    let (dy, dx) = (y as f32 + 0.5 - cy - jy, x as f32 + 0.5 - cx - jx);
                    let inside = match item.shape {
                        0 => dx * dx + dy * dy <= r * r,
                        1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
                        _ => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.55,
                    };
                    if inside {
                        data[(y * side + x) * 3..(y * side + x) * 3 + 3].copy_from_slice(&rgb);
                    }
                }
            }
        }
        RgbImage { width: side, height: side, data }
    }
}

fn count_word(n: usize) -> String {
    n.to_string()
}

/// A random example; questions whose answer the picture decides.
pub fn example(rng: &mut Rng) -> Example {
    let scene = Scene::random(rng);
    let image = scene.render(rng);
    let items: Vec<(usize, Item)> = scene.cells.iter().enumerate().filter_map(|(i, c)| c.map(|it| (i, it))).collect();
    let kind = if items.is_empty() { rng.below(3) } else { rng.below(4) };
    let (question, thought, answer) = match kind {
        0 => {
            let c = rng.below(COLOURS.len());
            let n = items.iter().filter(|(_, it)| it.colour == c).count();
            (format!("How many {} shapes are there?", COLOURS[c].0), format!("I count the {} shapes.", COLOURS[c].0), count_word(n))
        }
        1 => {
            let s = rng.below(SHAPES.len());
            let n = items.iter().filter(|(_, it)| it.shape == s).count();
            (format!("How many {}s are there?", SHAPES[s]), format!("I count the {}s.", SHAPES[s]), count_word(n))
        }
        2 => {
            let (s, c) = (rng.below(SHAPES.len()), rng.below(COLOURS.len()));
            let yes = items.iter().any(|(_, it)| it.shape == s && it.colour == c);
            let what = format!("{} {}", COLOURS[c].0, SHAPES[s]);
            (format!("Is there a {what}?"), format!("I look for a {what}."), if yes { "yes" } else { "no" }.to_string())
        }
        _ => {
            let (pos, it) = items[rng.below(items.len())];
            (
                format!("What colour is the shape at the {}?", POSITIONS[pos]),
                format!("I look at the {}.", POSITIONS[pos]),
                COLOURS[it.colour].0.to_string(),
            )
        }
    };
    let head = format!("<think>{thought}</think>\\boxed{{");
    let response = format!("{head}{answer}}}");
    let grounded = head.len()..head.len() + answer.len();
    Example { image, question, answer, response, grounded }
}

/// Example `index` of the split drawn from `seed` (train and held-out splits use different
/// seeds), made on demand, so a data position is just an index.
pub fn example_at(seed: u64, index: usize) -> Example {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    example(&mut rng)
}

/// The first `n` examples of the split of `seed`.
pub fn examples(seed: u64, n: usize) -> Vec<Example> {
    (0..n).map(|i| example_at(seed, i)).collect()
}

/// Every word the task can produce, for training the tokenizer.
pub fn corpus() -> Vec<String> {
    let mut rng = Rng::new(0x5EED);
    let mut lines: Vec<String> = (0..2000).map(|_| example(&mut rng)).flat_map(|e| [e.question, e.response]).collect();
    lines.push("You are a helpful assistant. user assistant system".into());
    lines.extend((0..10).map(|n| n.to_string()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_from_the_scene_and_the_grounded_span_is_the_answer() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let e = example(&mut rng);
            assert_eq!(&e.response[e.grounded.clone()], e.answer);
            assert!(e.response.starts_with("<think>") && e.response.ends_with('}'));
            assert_eq!((e.image.width, e.image.height), (56, 56));
        }
    }

    #[test]
    fn splits_from_different_seeds_differ_and_the_same_seed_repeats() {
        let (a, b, c) = (examples(1, 20), examples(1, 20), examples(2, 20));
        assert_eq!(a.iter().map(|e| &e.question).collect::<Vec<_>>(), b.iter().map(|e| &e.question).collect::<Vec<_>>());
        assert_ne!(a.iter().map(|e| &e.question).collect::<Vec<_>>(), c.iter().map(|e| &e.question).collect::<Vec<_>>());
    }
}
