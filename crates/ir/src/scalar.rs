//! Scalar types for the small ONNX element types: the 8-bit floats (`FLOAT8E4M3FN`,
//! `FLOAT8E4M3FNUZ`, `FLOAT8E5M2`, `FLOAT8E5M2FNUZ`, `FLOAT8E8M0`), the 4-bit float `FLOAT4E2M1`
//! and the sub-byte integers `INT4`, `UINT4`, `INT2`, `UINT2`.
//!
//! Every type is a `#[repr(transparent)]` newtype holding one element per byte. The sub-byte
//! types are packed only in serialised tensors; [`pack_4bit`], [`unpack_4bit`], [`pack_2bit`] and
//! [`unpack_2bit`] convert between the two layouts (lowest bits first, like `onnx.numpy_helper`).
//!
//! # Conversions
//!
//! The float conversions follow the ONNX reference implementation (`onnx.reference.ops.op_cast
//! .cast_to` in onnx 1.23, i.e. `onnx.numpy_helper.saturate_cast`, `to_float8e8m0` and
//! `ml_dtypes`), which is what generates the conformance-test data. The tests of this module check
//! every conversion against that reference, bit for bit, over about 400 000 `f32` and 1.2 million
//! `f64` inputs (every code's value, every midpoint between neighbouring codes, one ulp either
//! side of every midpoint, infinities, NaNs, zeros, subnormals).
//!
//! * `from_f32`/`from_f64` round to nearest, ties to even, directly from the source value.
//!   `from_f64` rounds once, correctly; `ml_dtypes` (hence the Python reference for a `DOUBLE`
//!   input) rounds to `f32` first, which differs for values within an `f32` ulp of a midpoint
//!   (e.g. `17 + 2^-48` gives 18 here, 16 there). `from_f32(x as f32, ..)` reproduces the
//!   reference bit for bit; the conformance tests have no `DOUBLE` to float8/float4 cast.
//! * `saturate = true` (the ONNX default): anything beyond the largest finite value, infinities
//!   included, becomes `±MAX`; NaN stays NaN.
//! * `saturate = false`: overflow and infinities become `±inf` for [`F8E5M2`] and NaN for the
//!   other f8 types (`±NaN` for [`F8E4M3FN`], the single NaN `0x80` for the FNUZ types).
//! * The FNUZ types have no negative zero: `-0.0`, and negative values that round to zero, give
//!   `+0`.
//! * [`F4E2M1`] has neither infinities nor NaN; conversions always saturate (`saturate` is
//!   ignored, as in the reference). NaN follows `ml_dtypes` and the ONNX conformance data: a NaN
//!   becomes a zero of the *opposite* sign (`+NaN` gives `-0`, code `0x8`). Note that
//!   `docs/technical/float4.md` and onnxruntime say NaN gives `+6` instead.
//! * [`F8E8M0`] follows `onnx.numpy_helper.to_float8e8m0` exactly, see
//!   [`F8E8M0::from_f32_round`].

use std::fmt;

// ---------------------------------------------------------------------------------------------
// Generic encoding / decoding of the sign-exponent-mantissa formats
// ---------------------------------------------------------------------------------------------

/// How a format treats NaN, infinities and zero.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// E4M3FN: no infinities, NaN is `S.1111.111`.
    Fn,
    /// IEEE-like E5M2: infinities `S.11111.00`, NaN `S.11111.{01,10,11}`.
    Ieee,
    /// FNUZ: no infinities, no negative zero, the only NaN is `0x80`.
    Fnuz,
    /// E2M1: no infinities, no NaN.
    Finite,
}

#[derive(Clone, Copy)]
struct Format {
    kind: Kind,
    man_bits: u32,
    bias: i32,
    /// The sign bit (0x80, or 0x08 for the 4-bit type).
    sign: u8,
    /// The code of the largest finite value (sign clear).
    max: u8,
    /// The code of the NaN produced from a positive NaN (sign clear), where the format has one.
    nan: u8,
}

const E4M3FN: Format = Format {
    kind: Kind::Fn,
    man_bits: 3,
    bias: 7,
    sign: 0x80,
    max: 0x7E,
    nan: 0x7F,
};
const E4M3FNUZ: Format = Format {
    kind: Kind::Fnuz,
    man_bits: 3,
    bias: 8,
    sign: 0x80,
    max: 0x7F,
    nan: 0x80,
};
const E5M2: Format = Format {
    kind: Kind::Ieee,
    man_bits: 2,
    bias: 15,
    sign: 0x80,
    max: 0x7B,
    nan: 0x7E,
};
const E5M2FNUZ: Format = Format {
    kind: Kind::Fnuz,
    man_bits: 2,
    bias: 16,
    sign: 0x80,
    max: 0x7F,
    nan: 0x80,
};
const E2M1: Format = Format {
    kind: Kind::Finite,
    man_bits: 1,
    bias: 1,
    sign: 0x08,
    max: 0x07,
    nan: 0x00,
};

impl Format {
    /// The code for a zero (or a value rounding to zero) of the given sign.
    #[inline]
    fn zero(&self, neg: bool) -> u8 {
        if neg && self.kind != Kind::Fnuz {
            self.sign
        } else {
            0
        }
    }

    /// The code for an infinity, or a finite value whose rounded magnitude exceeds `max`.
    #[inline]
    fn overflow(&self, neg: bool, saturate: bool) -> u8 {
        let s = if neg { self.sign } else { 0 };
        if saturate {
            return s | self.max;
        }
        match self.kind {
            Kind::Fn => s | self.nan,
            Kind::Ieee => s | 0x7C,
            Kind::Fnuz => 0x80,
            Kind::Finite => s | self.max,
        }
    }

    #[inline]
    fn nan_code(&self, neg: bool) -> u8 {
        match self.kind {
            Kind::Fn | Kind::Ieee => self.nan | if neg { self.sign } else { 0 },
            Kind::Fnuz => 0x80,
            // ml_dtypes: NaN becomes the zero of the opposite sign.
            Kind::Finite => {
                if neg {
                    0
                } else {
                    self.sign
                }
            }
        }
    }

    /// Rounds `x` to this format (nearest, ties to even) and returns the code.
    fn encode(&self, x: f64, saturate: bool) -> u8 {
        let bits = x.to_bits();
        let neg = bits >> 63 != 0;
        let exp = ((bits >> 52) & 0x7FF) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        if exp == 0x7FF {
            return if frac != 0 {
                self.nan_code(neg)
            } else {
                self.overflow(neg, saturate)
            };
        }
        if exp == 0 {
            // Zero, or an f64 subnormal: far below half the smallest subnormal of any format.
            return self.zero(neg);
        }
        let e = exp - 1023;
        let sig = (1u64 << 52) | frac;
        let m = self.man_bits as i32;
        let emin = 1 - self.bias;
        // Exponent of the target's unit in the last place at this magnitude.
        let q = if e >= emin { e - m } else { emin - m };
        let shift = q - (e - 52); // >= 52 - m > 0
        let n = if shift >= 64 {
            0
        } else {
            let n = sig >> shift;
            let rem = sig & ((1u64 << shift) - 1);
            let half = 1u64 << (shift - 1);
            if rem > half || (rem == half && n & 1 == 1) {
                n + 1
            } else {
                n
            }
        };
        // A carry out of the mantissa (n == 2^(m+1)) lands in the exponent field by itself.
        let mag = if e >= emin {
            (((e + self.bias) as i64) << m) + n as i64 - (1i64 << m)
        } else {
            n as i64
        };
        if mag == 0 {
            self.zero(neg)
        } else if mag > self.max as i64 {
            self.overflow(neg, saturate)
        } else {
            mag as u8 | if neg { self.sign } else { 0 }
        }
    }
}

const F32_QNAN: u32 = 0x7FC0_0000;

/// The `f32` bit pattern of `code` in format `f` (`const`, used to build lookup tables).
const fn decode_bits(f: Format, code: u8) -> u32 {
    let neg = code & f.sign != 0;
    let s: u32 = if neg { 0x8000_0000 } else { 0 };
    let mag = code & (f.sign - 1);
    let m = f.man_bits;
    let exp_field = (mag >> m) as i32;
    let mut man = (mag & ((1u8 << m) - 1)) as u32;
    match f.kind {
        Kind::Fn if mag == 0x7F => return s | F32_QNAN,
        Kind::Ieee if exp_field == 31 => return s | if man == 0 { 0x7F80_0000 } else { F32_QNAN },
        Kind::Fnuz if code == 0x80 => return F32_QNAN,
        _ => {}
    }
    if mag == 0 {
        return s;
    }
    let mut e = if exp_field == 0 {
        1 - f.bias
    } else {
        exp_field - f.bias
    };
    if exp_field == 0 {
        // Subnormal: normalise (every value of every format is an f32 normal number).
        while man < (1 << m) {
            man <<= 1;
            e -= 1;
        }
    } else {
        man |= 1 << m;
    }
    s | (((e + 127) as u32) << 23) | ((man & ((1 << m) - 1)) << (23 - m))
}

const fn build_table(f: Format) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = decode_bits(f, i as u8);
        i += 1;
    }
    t
}

const fn build_table_e8m0() -> [u32; 256] {
    let mut t = [0u32; 256];
    t[0] = 0x0040_0000; // 2^-127 is an f32 subnormal
    let mut i = 1;
    while i < 255 {
        t[i] = (i as u32) << 23;
        i += 1;
    }
    t[255] = F32_QNAN;
    t
}

static E4M3FN_TABLE: [u32; 256] = build_table(E4M3FN);
static E4M3FNUZ_TABLE: [u32; 256] = build_table(E4M3FNUZ);
static E5M2_TABLE: [u32; 256] = build_table(E5M2);
static E5M2FNUZ_TABLE: [u32; 256] = build_table(E5M2FNUZ);
static E8M0_TABLE: [u32; 256] = build_table_e8m0();
static E2M1_TABLE: [u32; 256] = build_table(E2M1);

// ---------------------------------------------------------------------------------------------
// The float types
// ---------------------------------------------------------------------------------------------

macro_rules! float_type {
    (
        $(#[$doc:meta])*
        $name:ident, $fmt:ident, $table:ident, mask = $mask:expr,
        max = $max:expr
    ) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u8);

        impl $name {
            /// `+0`.
            pub const ZERO: Self = Self(0);
            /// The largest finite value.
            pub const MAX: Self = Self($max);
            /// The most negative finite value (`-MAX`).
            pub const MIN: Self = Self($max | $fmt.sign);

            /// The element from its raw code (masked to the type's width).
            #[inline]
            pub const fn from_bits(bits: u8) -> Self {
                Self(bits & $mask)
            }

            /// The raw code.
            #[inline]
            pub const fn to_bits(self) -> u8 {
                self.0
            }

            /// The exact value as `f32` (every value of this type is representable).
            #[inline]
            pub fn to_f32(self) -> f32 {
                f32::from_bits($table[(self.0 & $mask) as usize])
            }

            /// The exact value as `f64`.
            #[inline]
            pub fn to_f64(self) -> f64 {
                self.to_f32() as f64
            }

            /// Rounds `x` to nearest (ties to even), with ONNX `Cast`/`QuantizeLinear` overflow
            /// semantics selected by `saturate` (see the module documentation).
            #[inline]
            pub fn from_f32(x: f32, saturate: bool) -> Self {
                // A NaN's sign decides the result (ml_dtypes), and Rust does not promise to keep
                // it through `as f64`; every other f32 widens exactly, so this rounds once.
                if x.is_nan() {
                    return Self($fmt.nan_code(x.is_sign_negative()));
                }
                Self($fmt.encode(x as f64, saturate))
            }

            /// Like [`Self::from_f32`], rounding directly from the `f64` value: the correctly
            /// rounded result. The Python reference (`ml_dtypes`) rounds an `f64` to `f32` first;
            /// use `from_f32(x as f32, saturate)` to reproduce that double rounding.
            #[inline]
            pub fn from_f64(x: f64, saturate: bool) -> Self {
                Self($fmt.encode(x, saturate))
            }

            /// Whether this is a NaN code.
            #[inline]
            pub fn is_nan(self) -> bool {
                self.to_f32().is_nan()
            }
        }

        impl From<$name> for f32 {
            #[inline]
            fn from(v: $name) -> f32 {
                v.to_f32()
            }
        }

        impl From<$name> for f64 {
            #[inline]
            fn from(v: $name) -> f64 {
                v.to_f64()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.to_f32(), f)
            }
        }
    };
}

float_type! {
    /// ONNX `FLOAT8E4M3FN`: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, NaN is
    /// `0x7F`/`0xFF`; range ±448.
    F8E4M3FN, E4M3FN, E4M3FN_TABLE, mask = 0xFF, max = 0x7E
}
float_type! {
    /// ONNX `FLOAT8E4M3FNUZ`: 1 sign, 4 exponent (bias 8), 3 mantissa bits; no infinities, no
    /// negative zero, NaN is `0x80`; range ±240.
    F8E4M3FNUZ, E4M3FNUZ, E4M3FNUZ_TABLE, mask = 0xFF, max = 0x7F
}
float_type! {
    /// ONNX `FLOAT8E5M2`: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like, with
    /// infinities (`0x7C`/`0xFC`) and NaNs; range ±57344.
    F8E5M2, E5M2, E5M2_TABLE, mask = 0xFF, max = 0x7B
}
float_type! {
    /// ONNX `FLOAT8E5M2FNUZ`: 1 sign, 5 exponent (bias 16), 2 mantissa bits; no infinities, no
    /// negative zero, NaN is `0x80`; range ±57344.
    F8E5M2FNUZ, E5M2FNUZ, E5M2FNUZ_TABLE, mask = 0xFF, max = 0x7F
}
float_type! {
    /// ONNX `FLOAT4E2M1`: 1 sign, 2 exponent (bias 1), 1 mantissa bit, in the low nibble (one
    /// element per byte); no infinities, no NaN; values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their
    /// negatives.
    F4E2M1, E2M1, E2M1_TABLE, mask = 0x0F, max = 0x07
}

impl F8E4M3FN {
    /// The NaN produced by conversions of a positive NaN.
    pub const NAN: Self = Self(0x7F);
}
impl F8E4M3FNUZ {
    /// The only NaN.
    pub const NAN: Self = Self(0x80);
}
impl F8E5M2 {
    /// The NaN produced by conversions of a positive NaN.
    pub const NAN: Self = Self(0x7E);
    /// `+inf`.
    pub const INFINITY: Self = Self(0x7C);
    /// `-inf`.
    pub const NEG_INFINITY: Self = Self(0xFC);
}
impl F8E5M2FNUZ {
    /// The only NaN.
    pub const NAN: Self = Self(0x80);
}

/// Rounding of a conversion to [`F8E8M0`]: the `round_mode` attribute of `Cast`-25.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum E8M0Round {
    /// Towards +inf in magnitude (the ONNX default).
    #[default]
    Up,
    /// Towards zero (truncate the mantissa).
    Down,
    /// To nearest.
    Nearest,
}

impl E8M0Round {
    /// Parses the `round_mode` attribute value (`"up"`, `"down"`, `"nearest"`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "up" => Some(Self::Up),
            "down" => Some(Self::Down),
            "nearest" => Some(Self::Nearest),
            _ => None,
        }
    }
}

/// ONNX `FLOAT8E8M0`: an unsigned power of two `2^(code - 127)`, code `0xFF` is NaN; no zero,
/// no infinities, no sign. Range `2^-127 ..= 2^127`.
#[repr(transparent)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct F8E8M0(pub u8);

impl F8E8M0 {
    /// `1.0`.
    pub const ONE: Self = Self(127);
    /// The largest value, `2^127`.
    pub const MAX: Self = Self(0xFE);
    /// The smallest value, `2^-127`.
    pub const MIN: Self = Self(0);
    /// The NaN.
    pub const NAN: Self = Self(0xFF);

    /// The element from its raw code.
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The raw code.
    #[inline]
    pub const fn to_bits(self) -> u8 {
        self.0
    }

    /// The exact value as `f32` (`2^-127` is an `f32` subnormal).
    #[inline]
    pub fn to_f32(self) -> f32 {
        f32::from_bits(E8M0_TABLE[self.0 as usize])
    }

    /// The exact value as `f64`.
    #[inline]
    pub fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }

    /// Whether this is the NaN code.
    #[inline]
    pub fn is_nan(self) -> bool {
        self.0 == 0xFF
    }

    /// [`Self::from_f32_round`] with the default rounding, [`E8M0Round::Up`].
    #[inline]
    pub fn from_f32(x: f32, saturate: bool) -> Self {
        Self::from_f32_round(x, saturate, E8M0Round::Up)
    }

    /// Converts `x` exactly like `onnx.numpy_helper.to_float8e8m0(x, saturate, round_mode)`
    /// (the reference `Cast`-24/25), which works on the `f32` exponent field alone:
    ///
    /// * NaN **and ±inf** give NaN (`0xFF`), whatever `saturate` (the `Cast` spec table says
    ///   `+inf` saturates to `MAX`; the reference does not).
    /// * The sign is ignored: `-x` converts like `x` (the spec leaves negatives undefined).
    /// * `±0` gives code 0 (`2^-127`); `f32` subnormals are treated as having exponent field 0.
    /// * `Up`: the exponent is incremented when the mantissa is non-zero (so an `f32` subnormal
    ///   becomes `2^-126`). `Down`: the mantissa is dropped. `Nearest`: incremented when the
    ///   mantissa is at least one half (for exponent field 0: more than one half).
    /// * A rounding increment from `2^127` gives NaN, or stays at `MAX` when `saturate`.
    pub fn from_f32_round(x: f32, saturate: bool, mode: E8M0Round) -> Self {
        let bits = x.to_bits();
        let exponent = (bits >> 23) & 0xFF;
        if exponent == 0xFF {
            return Self::NAN;
        }
        let round_up = match mode {
            E8M0Round::Down => false,
            E8M0Round::Up => bits & 0x7F_FFFF != 0,
            E8M0Round::Nearest => {
                let g = bits & 0x40_0000 != 0;
                let r = bits & 0x20_0000 != 0;
                let s = bits & 0x1F_FFFF != 0;
                g && (r || s || exponent > 0)
            }
        };
        let inc = u32::from(round_up && !(saturate && exponent == 0xFE));
        Self((exponent + inc) as u8)
    }

    /// [`Self::from_f64_round`] with the default rounding, [`E8M0Round::Up`].
    #[inline]
    pub fn from_f64(x: f64, saturate: bool) -> Self {
        Self::from_f64_round(x, saturate, E8M0Round::Up)
    }

    /// Like [`Self::from_f32_round`] after rounding `x` to `f32`, which is what the reference does
    /// for any input type.
    #[inline]
    pub fn from_f64_round(x: f64, saturate: bool, mode: E8M0Round) -> Self {
        Self::from_f32_round(x as f32, saturate, mode)
    }
}

impl From<F8E8M0> for f32 {
    #[inline]
    fn from(v: F8E8M0) -> f32 {
        v.to_f32()
    }
}

impl From<F8E8M0> for f64 {
    #[inline]
    fn from(v: F8E8M0) -> f64 {
        v.to_f64()
    }
}

impl fmt::Display for F8E8M0 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_f32(), f)
    }
}

// ---------------------------------------------------------------------------------------------
// The sub-byte integers
// ---------------------------------------------------------------------------------------------

macro_rules! int_type {
    (
        $(#[$doc:meta])*
        $name:ident($repr:ty), bits = $bits:expr, min = $min:expr, max = $max:expr,
        from_bits = $from_bits:expr
    ) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            /// The smallest value.
            pub const MIN: Self = Self($min);
            /// The largest value.
            pub const MAX: Self = Self($max);
            /// The number of bits of one element in packed storage.
            pub const BITS: u32 = $bits;

            /// The element from the low bits of `bits` (higher bits are ignored).
            #[inline]
            pub const fn from_bits(bits: u8) -> Self {
                Self($from_bits(bits & ((1u8 << $bits) - 1)))
            }

            /// The element's bits, in the low bits of the result (higher bits clear).
            #[inline]
            pub const fn to_bits(self) -> u8 {
                (self.0 as u8) & ((1u8 << $bits) - 1)
            }

            /// `x` if it is in range.
            #[inline]
            pub const fn new_checked(x: i64) -> Option<Self> {
                if x >= $min as i64 && x <= $max as i64 {
                    Some(Self(x as $repr))
                } else {
                    None
                }
            }

            /// The low bits of `x`, reinterpreted (two's complement for the signed types): the
            /// ONNX `Cast` rule for integers out of range, e.g. `17 -> 1`, `-9 -> 7` for `INT4`.
            #[inline]
            pub const fn new_wrapping(x: i64) -> Self {
                Self::from_bits(x as u8)
            }

            /// `x` clamped to `MIN..=MAX` (the `QuantizeLinear` saturation).
            #[inline]
            pub const fn from_i64_saturating(x: i64) -> Self {
                if x < $min as i64 {
                    Self::MIN
                } else if x > $max as i64 {
                    Self::MAX
                } else {
                    Self(x as $repr)
                }
            }

            /// Converts like the reference `Cast` from a float (`ml_dtypes` `astype`): truncates
            /// towards zero, then wraps like [`Self::new_wrapping`]; NaN, infinities and values
            /// outside the `i32` range give 0.
            #[inline]
            pub fn from_f64_cast(x: f64) -> Self {
                let t = x.trunc();
                if (-2_147_483_648.0..2_147_483_648.0).contains(&t) {
                    Self::new_wrapping(t as i64)
                } else {
                    Self(0)
                }
            }

            /// [`Self::from_f64_cast`] for an `f32`.
            #[inline]
            pub fn from_f32_cast(x: f32) -> Self {
                Self::from_f64_cast(x as f64)
            }

            /// The value.
            #[inline]
            pub const fn to_i32(self) -> i32 {
                self.0 as i32
            }

            /// The value.
            #[inline]
            pub const fn to_i64(self) -> i64 {
                self.0 as i64
            }

            /// The value (exact).
            #[inline]
            pub fn to_f32(self) -> f32 {
                self.0 as f32
            }
        }

        impl From<$name> for i32 {
            #[inline]
            fn from(v: $name) -> i32 {
                v.to_i32()
            }
        }

        impl From<$name> for i64 {
            #[inline]
            fn from(v: $name) -> i64 {
                v.to_i64()
            }
        }

        impl From<$name> for f32 {
            #[inline]
            fn from(v: $name) -> f32 {
                v.to_f32()
            }
        }

        impl From<$name> for f64 {
            #[inline]
            fn from(v: $name) -> f64 {
                v.0 as f64
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

const fn id_u8(b: u8) -> u8 {
    b
}

int_type! {
    /// ONNX `INT4`: one element per byte, sign-extended (`-8..=7`).
    I4(i8), bits = 4, min = -8, max = 7, from_bits = sign_extend_4
}
int_type! {
    /// ONNX `UINT4`: one element per byte (`0..=15`).
    U4(u8), bits = 4, min = 0, max = 15, from_bits = id_u8
}
int_type! {
    /// ONNX `INT2`: one element per byte, sign-extended (`-2..=1`).
    I2(i8), bits = 2, min = -2, max = 1, from_bits = sign_extend_2
}
int_type! {
    /// ONNX `UINT2`: one element per byte (`0..=3`).
    U2(u8), bits = 2, min = 0, max = 3, from_bits = id_u8
}

/// Sign-extends the low nibble of `n` (higher bits ignored): `0xF -> -1`, `0x8 -> -8`.
#[inline]
pub const fn sign_extend_4(n: u8) -> i8 {
    ((n << 4) as i8) >> 4
}

/// Sign-extends the low 2 bits of `n` (higher bits ignored): `0b11 -> -1`, `0b10 -> -2`.
#[inline]
pub const fn sign_extend_2(n: u8) -> i8 {
    ((n << 6) as i8) >> 6
}

// ---------------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------------

/// Unpacks `count` 4-bit elements, two per byte, the first in the low nibble (the ONNX layout of
/// `INT4`, `UINT4` and `FLOAT4E2M1`). Returns one nibble per element, in the low bits. Bytes
/// beyond `count.div_ceil(2)` are ignored.
///
/// # Panics
///
/// If `bytes.len() < count.div_ceil(2)`.
pub fn unpack_4bit(bytes: &[u8], count: usize) -> Vec<u8> {
    let need = count.div_ceil(2);
    assert!(
        bytes.len() >= need,
        "unpack_4bit: {count} elements need {need} bytes, got {}",
        bytes.len()
    );
    let mut out = Vec::with_capacity(count);
    for &b in &bytes[..count / 2] {
        out.push(b & 0x0F);
        out.push(b >> 4);
    }
    if count % 2 == 1 {
        out.push(bytes[count / 2] & 0x0F);
    }
    out
}

/// Packs 4-bit elements (the low nibble of each byte of `nibbles`), two per byte, the first in the
/// low nibble; an odd count leaves the last high nibble 0.
pub fn pack_4bit(nibbles: &[u8]) -> Vec<u8> {
    nibbles
        .chunks(2)
        .map(|c| (c[0] & 0x0F) | (c.get(1).map_or(0, |&x| x & 0x0F) << 4))
        .collect()
}

/// Unpacks `count` 2-bit elements, four per byte, the first in the lowest 2 bits (the ONNX layout
/// of `INT2` and `UINT2`). Returns one element per byte, in the low bits. Bytes beyond
/// `count.div_ceil(4)` are ignored.
///
/// # Panics
///
/// If `bytes.len() < count.div_ceil(4)`.
pub fn unpack_2bit(bytes: &[u8], count: usize) -> Vec<u8> {
    let need = count.div_ceil(4);
    assert!(
        bytes.len() >= need,
        "unpack_2bit: {count} elements need {need} bytes, got {}",
        bytes.len()
    );
    (0..count)
        .map(|i| (bytes[i / 4] >> (2 * (i % 4))) & 0x03)
        .collect()
}

/// Packs 2-bit elements (the low 2 bits of each byte of `values`), four per byte, the first in
/// the lowest bits; missing elements of the last byte are 0.
pub fn pack_2bit(values: &[u8]) -> Vec<u8> {
    values
        .chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &x)| acc | ((x & 0x03) << (2 * i)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values below were generated with onnx 1.23.2 and ml_dtypes 0.6.0:
    //
    // * `TO_F32_*`: `np.arange(n, dtype=np.uint8).view(dtype).astype(np.float32)`, each value as
    //   the upper 16 bits of its f32 bit pattern (every value is exact in bfloat16), 4 hex digits
    //   per code.
    // * `HASHES`/`E8M0_HASHES`: `onnx.reference.ops.op_cast.cast_to(x, to, saturate, round_mode)`
    //   over the inputs of `f32_inputs()` and `f64_inputs()`, reduced by `weighted_sum`:
    //   `(name, saturate, f32 inputs, f64 inputs rounded to f32 to odd, f64 inputs)`, and for
    //   E8M0 `(round_mode, saturate, f32 inputs, f64 inputs)`.

    const HASHES: &[(&str, bool, u64, u64, u64)] = &[
        (
            "F8E4M3FN",
            true,
            0x5d2adcfad5917b0a,
            0xfcdacdfe17bcbf66,
            0x78b250770935ae66,
        ),
        (
            "F8E4M3FN",
            false,
            0x61cdfe1e6076e6b6,
            0xf51390651102c886,
            0xf9de80d5ba2b459c,
        ),
        (
            "F8E4M3FNUZ",
            true,
            0x68f7137664f3cb9a,
            0xf959c6837edc713c,
            0xba0db1990d3a9224,
        ),
        (
            "F8E4M3FNUZ",
            false,
            0xf47207361ded72ba,
            0x01655f593171edd6,
            0x59d953444a035440,
        ),
        (
            "F8E5M2",
            true,
            0xfdc10173197454c0,
            0x9301588e30526e6e,
            0x9b0f4a7becb9e19a,
        ),
        (
            "F8E5M2",
            false,
            0x2e9ca0621afd8b26,
            0xfa48cc9e2a13a656,
            0x9ea614e0f767f264,
        ),
        (
            "F8E5M2FNUZ",
            true,
            0x006e0ec6843b95a6,
            0x2cefb109315e69c8,
            0x3a2ec18e42ffddd6,
        ),
        (
            "F8E5M2FNUZ",
            false,
            0x19d93ebdf289ef8c,
            0x5fc6a060415ad930,
            0xb3a1fdce3960f4a0,
        ),
        (
            "F4E2M1",
            true,
            0x4c45c1769ce1ade4,
            0x33210f11246dfbf2,
            0xb82c9ada42cf5f3c,
        ),
        (
            "F4E2M1",
            false,
            0x4c45c1769ce1ade4,
            0x33210f11246dfbf2,
            0xb82c9ada42cf5f3c,
        ),
    ];

    const E8M0_HASHES: &[(&str, bool, u64, u64)] = &[
        ("up", true, 0x729714822a9e724c, 0x728e0a53a95b6d8c),
        ("up", false, 0x5650b83a4e6971b8, 0x3723b21397a71012),
        ("down", true, 0x256d471fa988b190, 0x403eff39dce9ba1c),
        ("down", false, 0x256d471fa988b190, 0x403eff39dce9ba1c),
        ("nearest", true, 0xc8313a28c4c89fc2, 0x78e12af91f39c29c),
        ("nearest", false, 0xa30e26b5f9528438, 0x423ffc4f8ae7abde),
    ];

    const TO_F32_E4M3FN: &str = concat!(
        "00003b003b803bc03c003c203c403c603c803c903ca03cb03cc03cd03ce03cf0",
        "3d003d103d203d303d403d503d603d703d803d903da03db03dc03dd03de03df0",
        "3e003e103e203e303e403e503e603e703e803e903ea03eb03ec03ed03ee03ef0",
        "3f003f103f203f303f403f503f603f703f803f903fa03fb03fc03fd03fe03ff0",
        "400040104020403040404050406040704080409040a040b040c040d040e040f0",
        "410041104120413041404150416041704180419041a041b041c041d041e041f0",
        "420042104220423042404250426042704280429042a042b042c042d042e042f0",
        "430043104320433043404350436043704380439043a043b043c043d043e07fc0",
        "8000bb00bb80bbc0bc00bc20bc40bc60bc80bc90bca0bcb0bcc0bcd0bce0bcf0",
        "bd00bd10bd20bd30bd40bd50bd60bd70bd80bd90bda0bdb0bdc0bdd0bde0bdf0",
        "be00be10be20be30be40be50be60be70be80be90bea0beb0bec0bed0bee0bef0",
        "bf00bf10bf20bf30bf40bf50bf60bf70bf80bf90bfa0bfb0bfc0bfd0bfe0bff0",
        "c000c010c020c030c040c050c060c070c080c090c0a0c0b0c0c0c0d0c0e0c0f0",
        "c100c110c120c130c140c150c160c170c180c190c1a0c1b0c1c0c1d0c1e0c1f0",
        "c200c210c220c230c240c250c260c270c280c290c2a0c2b0c2c0c2d0c2e0c2f0",
        "c300c310c320c330c340c350c360c370c380c390c3a0c3b0c3c0c3d0c3e0ffc0",
    );

    const TO_F32_E4M3FNUZ: &str = concat!(
        "00003a803b003b403b803ba03bc03be03c003c103c203c303c403c503c603c70",
        "3c803c903ca03cb03cc03cd03ce03cf03d003d103d203d303d403d503d603d70",
        "3d803d903da03db03dc03dd03de03df03e003e103e203e303e403e503e603e70",
        "3e803e903ea03eb03ec03ed03ee03ef03f003f103f203f303f403f503f603f70",
        "3f803f903fa03fb03fc03fd03fe03ff040004010402040304040405040604070",
        "4080409040a040b040c040d040e040f041004110412041304140415041604170",
        "4180419041a041b041c041d041e041f042004210422042304240425042604270",
        "4280429042a042b042c042d042e042f043004310432043304340435043604370",
        "ffc0ba80bb00bb40bb80bba0bbc0bbe0bc00bc10bc20bc30bc40bc50bc60bc70",
        "bc80bc90bca0bcb0bcc0bcd0bce0bcf0bd00bd10bd20bd30bd40bd50bd60bd70",
        "bd80bd90bda0bdb0bdc0bdd0bde0bdf0be00be10be20be30be40be50be60be70",
        "be80be90bea0beb0bec0bed0bee0bef0bf00bf10bf20bf30bf40bf50bf60bf70",
        "bf80bf90bfa0bfb0bfc0bfd0bfe0bff0c000c010c020c030c040c050c060c070",
        "c080c090c0a0c0b0c0c0c0d0c0e0c0f0c100c110c120c130c140c150c160c170",
        "c180c190c1a0c1b0c1c0c1d0c1e0c1f0c200c210c220c230c240c250c260c270",
        "c280c290c2a0c2b0c2c0c2d0c2e0c2f0c300c310c320c330c340c350c360c370",
    );

    const TO_F32_E5M2: &str = concat!(
        "0000378038003840388038a038c038e03900392039403960398039a039c039e0",
        "3a003a203a403a603a803aa03ac03ae03b003b203b403b603b803ba03bc03be0",
        "3c003c203c403c603c803ca03cc03ce03d003d203d403d603d803da03dc03de0",
        "3e003e203e403e603e803ea03ec03ee03f003f203f403f603f803fa03fc03fe0",
        "4000402040404060408040a040c040e04100412041404160418041a041c041e0",
        "4200422042404260428042a042c042e04300432043404360438043a043c043e0",
        "4400442044404460448044a044c044e04500452045404560458045a045c045e0",
        "4600462046404660468046a046c046e047004720474047607f807fc07fc07fc0",
        "8000b780b800b840b880b8a0b8c0b8e0b900b920b940b960b980b9a0b9c0b9e0",
        "ba00ba20ba40ba60ba80baa0bac0bae0bb00bb20bb40bb60bb80bba0bbc0bbe0",
        "bc00bc20bc40bc60bc80bca0bcc0bce0bd00bd20bd40bd60bd80bda0bdc0bde0",
        "be00be20be40be60be80bea0bec0bee0bf00bf20bf40bf60bf80bfa0bfc0bfe0",
        "c000c020c040c060c080c0a0c0c0c0e0c100c120c140c160c180c1a0c1c0c1e0",
        "c200c220c240c260c280c2a0c2c0c2e0c300c320c340c360c380c3a0c3c0c3e0",
        "c400c420c440c460c480c4a0c4c0c4e0c500c520c540c560c580c5a0c5c0c5e0",
        "c600c620c640c660c680c6a0c6c0c6e0c700c720c740c760ff80ffc0ffc0ffc0",
    );

    const TO_F32_E5M2FNUZ: &str = concat!(
        "00003700378037c03800382038403860388038a038c038e03900392039403960",
        "398039a039c039e03a003a203a403a603a803aa03ac03ae03b003b203b403b60",
        "3b803ba03bc03be03c003c203c403c603c803ca03cc03ce03d003d203d403d60",
        "3d803da03dc03de03e003e203e403e603e803ea03ec03ee03f003f203f403f60",
        "3f803fa03fc03fe04000402040404060408040a040c040e04100412041404160",
        "418041a041c041e04200422042404260428042a042c042e04300432043404360",
        "438043a043c043e04400442044404460448044a044c044e04500452045404560",
        "458045a045c045e04600462046404660468046a046c046e04700472047404760",
        "ffc0b700b780b7c0b800b820b840b860b880b8a0b8c0b8e0b900b920b940b960",
        "b980b9a0b9c0b9e0ba00ba20ba40ba60ba80baa0bac0bae0bb00bb20bb40bb60",
        "bb80bba0bbc0bbe0bc00bc20bc40bc60bc80bca0bcc0bce0bd00bd20bd40bd60",
        "bd80bda0bdc0bde0be00be20be40be60be80bea0bec0bee0bf00bf20bf40bf60",
        "bf80bfa0bfc0bfe0c000c020c040c060c080c0a0c0c0c0e0c100c120c140c160",
        "c180c1a0c1c0c1e0c200c220c240c260c280c2a0c2c0c2e0c300c320c340c360",
        "c380c3a0c3c0c3e0c400c420c440c460c480c4a0c4c0c4e0c500c520c540c560",
        "c580c5a0c5c0c5e0c600c620c640c660c680c6a0c6c0c6e0c700c720c740c760",
    );

    const TO_F32_E8M0: &str = concat!(
        "0040008001000180020002800300038004000480050005800600068007000780",
        "08000880090009800a000a800b000b800c000c800d000d800e000e800f000f80",
        "1000108011001180120012801300138014001480150015801600168017001780",
        "18001880190019801a001a801b001b801c001c801d001d801e001e801f001f80",
        "2000208021002180220022802300238024002480250025802600268027002780",
        "28002880290029802a002a802b002b802c002c802d002d802e002e802f002f80",
        "3000308031003180320032803300338034003480350035803600368037003780",
        "38003880390039803a003a803b003b803c003c803d003d803e003e803f003f80",
        "4000408041004180420042804300438044004480450045804600468047004780",
        "48004880490049804a004a804b004b804c004c804d004d804e004e804f004f80",
        "5000508051005180520052805300538054005480550055805600568057005780",
        "58005880590059805a005a805b005b805c005c805d005d805e005e805f005f80",
        "6000608061006180620062806300638064006480650065806600668067006780",
        "68006880690069806a006a806b006b806c006c806d006d806e006e806f006f80",
        "7000708071007180720072807300738074007480750075807600768077007780",
        "78007880790079807a007a807b007b807c007c807d007d807e007e807f007fc0",
    );

    const TO_F32_E2M1: &str = "00003f003f803fc040004040408040c08000bf00bf80bfc0c000c040c080c0c0";

    /// `f32` inputs: every bit pattern whose low 16 bits are one of `LOS`. Every value and every
    /// midpoint of every format here has at most 8 significant bits, so this covers all of them
    /// exactly, one ulp either side of them, zeros, subnormals, infinities and NaNs.
    fn f32_inputs() -> Vec<f32> {
        const LOS: [u32; 6] = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF];
        (0..0x1_0000u32)
            .flat_map(|hi| LOS.iter().map(move |&lo| f32::from_bits(hi << 16 | lo)))
            .collect()
    }

    /// `f64` inputs: every non-NaN `f32` input, and its `f64` neighbours either side (bit pattern
    /// ±1, wrapping): these catch double rounding through `f32`.
    fn f64_inputs() -> Vec<f64> {
        f32_inputs()
            .into_iter()
            .filter(|x| !x.is_nan())
            .flat_map(|x| {
                let b = (x as f64).to_bits();
                [b, b.wrapping_add(1), b.wrapping_sub(1)].map(f64::from_bits)
            })
            .collect()
    }

    fn splitmix64(i: u64) -> u64 {
        let mut z = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `sum(code[i] * (splitmix64(i) | 1)) mod 2^64`: changes with any single code.
    fn weighted_sum(codes: impl Iterator<Item = u8>) -> u64 {
        codes.enumerate().fold(0u64, |acc, (i, c)| {
            acc.wrapping_add(u64::from(c).wrapping_mul(splitmix64(i as u64) | 1))
        })
    }

    fn table(hex: &str) -> Vec<f32> {
        (0..hex.len() / 4)
            .map(|i| f32::from_bits(u32::from_str_radix(&hex[4 * i..4 * i + 4], 16).unwrap() << 16))
            .collect()
    }

    fn check_to_f32(name: &str, hex: &str, f: impl Fn(u8) -> f32) {
        let expected = table(hex);
        for (code, &e) in expected.iter().enumerate() {
            let got = f(code as u8);
            let ok = if e.is_nan() {
                got.is_nan()
            } else {
                got.to_bits() == e.to_bits()
            };
            assert!(
                ok,
                "{name}: code {code:#04x} -> {got:e} ({:#010x}), expected {e:e}",
                got.to_bits()
            );
        }
    }

    #[test]
    fn to_f32_exhaustive() {
        assert_eq!(TO_F32_E2M1.len(), 16 * 4);
        check_to_f32("F8E4M3FN", TO_F32_E4M3FN, |c| F8E4M3FN(c).to_f32());
        check_to_f32("F8E4M3FNUZ", TO_F32_E4M3FNUZ, |c| F8E4M3FNUZ(c).to_f32());
        check_to_f32("F8E5M2", TO_F32_E5M2, |c| F8E5M2(c).to_f32());
        check_to_f32("F8E5M2FNUZ", TO_F32_E5M2FNUZ, |c| F8E5M2FNUZ(c).to_f32());
        check_to_f32("F8E8M0", TO_F32_E8M0, |c| F8E8M0(c).to_f32());
        check_to_f32("F4E2M1", TO_F32_E2M1, |c| F4E2M1(c).to_f32());
        for c in 0..=255u8 {
            assert_eq!(
                F8E4M3FN(c).to_f64().to_bits(),
                (F8E4M3FN(c).to_f32() as f64).to_bits()
            );
            assert_eq!(F8E8M0(c).is_nan(), c == 0xFF);
            assert_eq!(F8E5M2(c).is_nan(), F8E5M2(c).to_f32().is_nan());
        }
        assert_eq!(F8E4M3FN::MAX.to_f32(), 448.0);
        assert_eq!(F8E4M3FN::MIN.to_f32(), -448.0);
        assert_eq!(F8E4M3FNUZ::MAX.to_f32(), 240.0);
        assert_eq!(F8E5M2::MAX.to_f32(), 57344.0);
        assert_eq!(F8E5M2FNUZ::MIN.to_f32(), -57344.0);
        assert_eq!(F8E5M2::INFINITY.to_f32(), f32::INFINITY);
        assert_eq!(F8E5M2::NEG_INFINITY.to_f32(), f32::NEG_INFINITY);
        assert!(
            F8E4M3FN::NAN.is_nan()
                && F8E4M3FNUZ::NAN.is_nan()
                && F8E5M2::NAN.is_nan()
                && F8E5M2FNUZ::NAN.is_nan()
        );
        assert_eq!(F4E2M1::MAX.to_f32(), 6.0);
        assert_eq!(F4E2M1::MIN.to_f32(), -6.0);
        assert_eq!(F8E8M0::ONE.to_f32(), 1.0);
        assert_eq!(F8E8M0::MAX.to_f64(), 2f64.powi(127));
        assert_eq!(F8E8M0::MIN.to_f64(), 2f64.powi(-127));
        // Bits above the nibble are ignored by F4E2M1.
        assert_eq!(F4E2M1(0xF3).to_f32(), 1.5);
        assert_eq!(F4E2M1::from_bits(0xF3), F4E2M1(3));
    }

    fn check_hash<T>(
        name: &str,
        saturate: bool,
        expected: (u64, u64),
        f32_conv: impl Fn(f32) -> T,
        f64_conv: impl Fn(f64) -> T,
        bits: impl Fn(T) -> u8,
    ) {
        let got32 = weighted_sum(f32_inputs().into_iter().map(|x| bits(f32_conv(x))));
        let got64 = weighted_sum(f64_inputs().into_iter().map(|x| bits(f64_conv(x))));
        assert_eq!(
            (got32, got64),
            expected,
            "{name} saturate={saturate}: (f32, f64) conversions differ from the ONNX reference"
        );
    }

    /// Checks `from_f32` over `f32_inputs()`, `from_f64` over `f64_inputs()` (against the
    /// reference applied to the input rounded to `f32` *to odd*, which makes the reference's own
    /// rounding the correct rounding of the `f64`), and `from_f32(x as f32)` over `f64_inputs()`
    /// (against the reference applied to the `f64` itself, which `ml_dtypes` rounds to `f32`
    /// first).
    fn check_f8_hash<T>(
        name: &str,
        saturate: bool,
        expected: (u64, u64, u64),
        f32_conv: impl Fn(f32) -> T,
        f64_conv: impl Fn(f64) -> T,
        bits: impl Fn(T) -> u8,
    ) {
        check_hash(
            name,
            saturate,
            (expected.0, expected.1),
            &f32_conv,
            f64_conv,
            &bits,
        );
        let via_f32 = weighted_sum(f64_inputs().into_iter().map(|x| bits(f32_conv(x as f32))));
        assert_eq!(via_f32, expected.2, "{name} saturate={saturate}: from_f32(x as f32) differs from the reference on f64 inputs");
    }

    #[test]
    fn from_float_matches_reference() {
        for &(name, sat, h32, h64, h64_via_f32) in HASHES {
            let e = (h32, h64, h64_via_f32);
            match name {
                "F8E4M3FN" => check_f8_hash(
                    name,
                    sat,
                    e,
                    |x| F8E4M3FN::from_f32(x, sat),
                    |x| F8E4M3FN::from_f64(x, sat),
                    |v| v.0,
                ),
                "F8E4M3FNUZ" => check_f8_hash(
                    name,
                    sat,
                    e,
                    |x| F8E4M3FNUZ::from_f32(x, sat),
                    |x| F8E4M3FNUZ::from_f64(x, sat),
                    |v| v.0,
                ),
                "F8E5M2" => check_f8_hash(
                    name,
                    sat,
                    e,
                    |x| F8E5M2::from_f32(x, sat),
                    |x| F8E5M2::from_f64(x, sat),
                    |v| v.0,
                ),
                "F8E5M2FNUZ" => check_f8_hash(
                    name,
                    sat,
                    e,
                    |x| F8E5M2FNUZ::from_f32(x, sat),
                    |x| F8E5M2FNUZ::from_f64(x, sat),
                    |v| v.0,
                ),
                "F4E2M1" => check_f8_hash(
                    name,
                    sat,
                    e,
                    |x| F4E2M1::from_f32(x, sat),
                    |x| F4E2M1::from_f64(x, sat),
                    |v| v.0,
                ),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn e8m0_from_float_matches_reference() {
        for &(mode, sat, h32, h64) in E8M0_HASHES {
            let m = E8M0Round::parse(mode).unwrap();
            check_hash(
                mode,
                sat,
                (h32, h64),
                |x| F8E8M0::from_f32_round(x, sat, m),
                |x| F8E8M0::from_f64_round(x, sat, m),
                |v| v.0,
            );
        }
        assert_eq!(E8M0Round::parse("zero"), None);
        assert_eq!(E8M0Round::default(), E8M0Round::Up);
    }

    /// The inputs and expected outputs of the ONNX conformance tests `test_cast_*` (from
    /// `onnx/backend/test/case/node/cast.py`), written out.
    #[test]
    fn backend_cast_cases() {
        let f8_in: [f32; 15] = [
            0.478_925_47,
            0.480_336_67,
            0.499_684_87,
            0.819_105_45,
            0.470_312_48,
            0.722_903_8,
            1e6,
            1e-7,
            f32::NAN,
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1e-7,
            1e-7,
            -1e6,
        ];
        type Conv = fn(f32, bool) -> u8;
        let cases: [(Conv, bool, [u8; 15]); 8] = [
            (
                |x, s| F8E4M3FN::from_f32(x, s).0,
                true,
                [
                    0x2f, 0x2f, 0x30, 0x35, 0x2f, 0x34, 0x7e, 0x00, 0x7f, 0x7e, 0x7e, 0xfe, 0x80,
                    0x00, 0xfe,
                ],
            ),
            (
                |x, s| F8E4M3FN::from_f32(x, s).0,
                false,
                [
                    0x2f, 0x2f, 0x30, 0x35, 0x2f, 0x34, 0x7f, 0x00, 0x7f, 0x7f, 0x7f, 0xff, 0x80,
                    0x00, 0xff,
                ],
            ),
            (
                |x, s| F8E4M3FNUZ::from_f32(x, s).0,
                true,
                [
                    0x37, 0x37, 0x38, 0x3d, 0x37, 0x3c, 0x7f, 0x00, 0x80, 0x7f, 0x7f, 0xff, 0x00,
                    0x00, 0xff,
                ],
            ),
            (
                |x, s| F8E4M3FNUZ::from_f32(x, s).0,
                false,
                [
                    0x37, 0x37, 0x38, 0x3d, 0x37, 0x3c, 0x80, 0x00, 0x80, 0x80, 0x80, 0x80, 0x00,
                    0x00, 0x80,
                ],
            ),
            (
                |x, s| F8E5M2::from_f32(x, s).0,
                true,
                [
                    0x38, 0x38, 0x38, 0x3b, 0x38, 0x3a, 0x7b, 0x00, 0x7e, 0x7b, 0x7b, 0xfb, 0x80,
                    0x00, 0xfb,
                ],
            ),
            (
                |x, s| F8E5M2::from_f32(x, s).0,
                false,
                [
                    0x38, 0x38, 0x38, 0x3b, 0x38, 0x3a, 0x7c, 0x00, 0x7e, 0x7c, 0x7c, 0xfc, 0x80,
                    0x00, 0xfc,
                ],
            ),
            (
                |x, s| F8E5M2FNUZ::from_f32(x, s).0,
                true,
                [
                    0x3c, 0x3c, 0x3c, 0x3f, 0x3c, 0x3e, 0x7f, 0x00, 0x80, 0x7f, 0x7f, 0xff, 0x00,
                    0x00, 0xff,
                ],
            ),
            (
                |x, s| F8E5M2FNUZ::from_f32(x, s).0,
                false,
                [
                    0x3c, 0x3c, 0x3c, 0x3f, 0x3c, 0x3e, 0x80, 0x00, 0x80, 0x80, 0x80, 0x80, 0x00,
                    0x00, 0x80,
                ],
            ),
        ];
        for (i, (conv, sat, expected)) in cases.iter().enumerate() {
            let got: Vec<u8> = f8_in.iter().map(|&x| conv(x, *sat)).collect();
            assert_eq!(got, expected, "case {i} saturate={sat}");
        }

        let f4_in: [f32; 15] = [
            0.48,
            0.25,
            1.05,
            -3.5,
            -8.0,
            9.0,
            1e6,
            1e-7,
            f32::NAN,
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -4.0,
            0.01,
            -0.0,
        ];
        let f4_expected = [
            0x01, 0x00, 0x02, 0x0e, 0x0f, 0x07, 0x07, 0x00, 0x08, 0x07, 0x07, 0x0f, 0x0e, 0x00,
            0x08,
        ];
        for sat in [true, false] {
            let got: Vec<u8> = f4_in.iter().map(|&x| F4E2M1::from_f32(x, sat).0).collect();
            assert_eq!(got, f4_expected);
        }

        let e8_in = [0.0f32, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0];
        let got: Vec<u8> = e8_in.iter().map(|&x| F8E8M0::from_f32(x, true).0).collect();
        assert_eq!(got, [0x00, 0x7c, 0x7d, 0x7e, 0x80, 0x80, 0x81, 0x82]);
    }

    #[test]
    fn round_trip_and_spot_checks() {
        for c in 0..=255u8 {
            for sat in [true, false] {
                let v = F8E4M3FN(c);
                if !v.is_nan() {
                    assert_eq!(F8E4M3FN::from_f32(v.to_f32(), sat), v);
                    assert_eq!(F8E4M3FN::from_f64(v.to_f64(), sat), v);
                }
                let v = F8E4M3FNUZ(c);
                if !v.is_nan() {
                    assert_eq!(F8E4M3FNUZ::from_f32(v.to_f32(), sat), v);
                }
                let v = F8E5M2(c);
                if !v.is_nan() && (!sat || v.to_f32().is_finite()) {
                    assert_eq!(F8E5M2::from_f32(v.to_f32(), sat), v);
                }
                let v = F8E5M2FNUZ(c);
                if !v.is_nan() {
                    assert_eq!(F8E5M2FNUZ::from_f32(v.to_f32(), sat), v);
                }
                if c < 16 {
                    assert_eq!(F4E2M1::from_f32(F4E2M1(c).to_f32(), sat), F4E2M1(c));
                }
                if (1..0xFF).contains(&c) {
                    for mode in [E8M0Round::Up, E8M0Round::Down, E8M0Round::Nearest] {
                        assert_eq!(
                            F8E8M0::from_f32_round(F8E8M0(c).to_f32(), sat, mode),
                            F8E8M0(c)
                        );
                    }
                }
            }
        }
        // Ties to even, overflow.
        assert_eq!(F8E4M3FN::from_f32(17.0, false).to_f32(), 16.0);
        assert_eq!(F8E4M3FN::from_f32(19.0, false).to_f32(), 20.0);
        assert_eq!(F8E4M3FN::from_f32(464.0, false), F8E4M3FN::MAX);
        assert_eq!(F8E4M3FN::from_f32(464.1, false), F8E4M3FN::NAN);
        assert_eq!(F8E4M3FN::from_f32(-464.1, false), F8E4M3FN(0xFF));
        assert_eq!(F8E4M3FN::from_f32(-1e9, true), F8E4M3FN::MIN);
        assert_eq!(F8E5M2::from_f32(61440.0, false), F8E5M2::INFINITY);
        assert_eq!(F8E5M2::from_f32(61439.0, false), F8E5M2::MAX);
        assert_eq!(
            F8E5M2::from_f32(f32::NEG_INFINITY, false),
            F8E5M2::NEG_INFINITY
        );
        assert_eq!(F8E5M2::from_f32(f32::NEG_INFINITY, true), F8E5M2::MIN);
        assert_eq!(F8E4M3FNUZ::from_f32(248.0, false), F8E4M3FNUZ::NAN);
        assert_eq!(F8E4M3FNUZ::from_f32(f32::INFINITY, true), F8E4M3FNUZ::MAX);
        assert_eq!(F8E5M2FNUZ::from_f32(-f32::NAN, true), F8E5M2FNUZ::NAN);
        // Subnormals, zeros.
        assert_eq!(F8E4M3FN::from_f32(2f32.powi(-9), true), F8E4M3FN(1));
        assert_eq!(F8E4M3FN::from_f32(2f32.powi(-10), true), F8E4M3FN(0));
        assert_eq!(F8E4M3FN::from_f32(-2f32.powi(-10), true), F8E4M3FN(0x80));
        assert_eq!(F8E4M3FN::from_f32(1.5 * 2f32.powi(-10), true), F8E4M3FN(1));
        assert_eq!(F8E4M3FN::from_f32(-0.0, true), F8E4M3FN(0x80));
        assert_eq!(F8E4M3FNUZ::from_f32(-0.0, true), F8E4M3FNUZ(0));
        assert_eq!(F8E5M2FNUZ::from_f32(-1e-30, false), F8E5M2FNUZ(0));
        // Double rounding through f32 would get this wrong: just above the midpoint 17.
        let above_17 = f64::from_bits(17f64.to_bits() + 1);
        assert_eq!(F8E4M3FN::from_f64(above_17, true).to_f32(), 18.0);
        assert_eq!(F8E4M3FN::from_f32(above_17 as f32, true).to_f32(), 16.0);
        // F4E2M1.
        assert_eq!(F4E2M1::from_f32(2.5, true).to_f32(), 2.0);
        assert_eq!(F4E2M1::from_f32(5.0, true).to_f32(), 4.0);
        assert_eq!(F4E2M1::from_f32(5.01, false).to_f32(), 6.0);
        assert_eq!(F4E2M1::from_f32(-f32::NAN, true), F4E2M1(0));
        // F8E8M0 quirks of the reference.
        assert_eq!(F8E8M0::from_f32(f32::INFINITY, true), F8E8M0::NAN);
        assert_eq!(F8E8M0::from_f32(-2.0, true), F8E8M0(128));
        assert_eq!(F8E8M0::from_f32(3.0, true), F8E8M0(129));
        assert_eq!(
            F8E8M0::from_f32_round(3.0, true, E8M0Round::Down),
            F8E8M0(128)
        );
        assert_eq!(
            F8E8M0::from_f32_round(3.0, true, E8M0Round::Nearest),
            F8E8M0(129)
        );
        assert_eq!(
            F8E8M0::from_f32_round(2.9, true, E8M0Round::Nearest),
            F8E8M0(128)
        );
        assert_eq!(
            F8E8M0::from_f32_round(3.1, true, E8M0Round::Nearest),
            F8E8M0(129)
        );
        assert_eq!(
            F8E8M0::from_f32_round(2.99e-39 /* subnormal */, true, E8M0Round::Nearest),
            F8E8M0(0)
        );
        assert_eq!(F8E8M0::from_f32(f32::MAX, true), F8E8M0::MAX);
        assert_eq!(F8E8M0::from_f32(f32::MAX, false), F8E8M0::NAN);
        assert_eq!(F8E8M0::from_f32(2f32.powi(-127), true), F8E8M0(1));
        assert_eq!(
            F8E8M0::from_f32_round(2f32.powi(-127), true, E8M0Round::Nearest),
            F8E8M0(0)
        );
        assert_eq!(F8E8M0::from_f64(3.0, true), F8E8M0(129));
    }

    #[test]
    fn sub_byte_integers() {
        for n in 0..=255u8 {
            assert_eq!(
                i32::from(sign_extend_4(n)),
                i32::from(n & 0xF) - if n & 8 != 0 { 16 } else { 0 }
            );
            assert_eq!(
                i32::from(sign_extend_2(n)),
                i32::from(n & 3) - if n & 2 != 0 { 4 } else { 0 }
            );
            assert_eq!(I4::from_bits(n).to_bits(), n & 0xF);
            assert_eq!(U4::from_bits(n).to_bits(), n & 0xF);
            assert_eq!(I2::from_bits(n).to_bits(), n & 3);
            assert_eq!(U2::from_bits(n).to_bits(), n & 3);
        }
        assert_eq!(I4::new_wrapping(-9), I4(7));
        assert_eq!(I4::new_wrapping(8), I4(-8));
        assert_eq!(I4::new_wrapping(300), I4(-4));
        assert_eq!(U4::new_wrapping(-300), U4(4));
        assert_eq!(U4::new_wrapping(-17), U4(15));
        assert_eq!(I2::new_wrapping(2), I2(-2));
        assert_eq!(U2::new_wrapping(-1), U2(3));
        assert_eq!(I4::from_i64_saturating(-100), I4::MIN);
        assert_eq!(I4::from_i64_saturating(100), I4(7));
        assert_eq!(U4::from_i64_saturating(-1), U4(0));
        assert_eq!(U2::from_i64_saturating(9), U2(3));
        assert_eq!(I2::from_i64_saturating(-9), I2(-2));
        assert_eq!(I4::new_checked(7), Some(I4(7)));
        assert_eq!(I4::new_checked(8), None);
        assert_eq!(U2::new_checked(-1), None);
        assert_eq!(I4(-3).to_i32(), -3);
        assert_eq!(U4(13).to_i64(), 13);
        assert_eq!(f32::from(I2(-2)), -2.0);
        assert!(I4(-8) < I4(7));

        // ml_dtypes `astype` from float32, as used by the reference Cast.
        let x = [
            -9.0f32,
            -8.0,
            -1.0,
            7.0,
            8.0,
            15.0,
            16.0,
            2.5,
            3.5,
            -2.5,
            1e10,
            f32::NAN,
        ];
        let i4: Vec<i8> = x.iter().map(|&v| I4::from_f32_cast(v).0).collect();
        assert_eq!(i4, [7, -8, -1, 7, -8, -1, 0, 2, 3, -2, 0, 0]);
        let u4: Vec<u8> = x.iter().map(|&v| U4::from_f32_cast(v).0).collect();
        assert_eq!(u4, [7, 8, 15, 7, 8, 15, 0, 2, 3, 14, 0, 0]);
        let y = [-3.0f32, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        let i2: Vec<i8> = y.iter().map(|&v| I2::from_f32_cast(v).0).collect();
        assert_eq!(i2, [1, -2, -1, 0, 1, -2, -1, 0]);
        let u2: Vec<u8> = y.iter().map(|&v| U2::from_f32_cast(v).0).collect();
        assert_eq!(u2, [1, 2, 3, 0, 1, 2, 3, 0]);
        assert_eq!(I4::from_f64_cast(2_147_483_653.0), I4(0));
        assert_eq!(I4::from_f64_cast(f64::NEG_INFINITY), I4(0));
        assert_eq!(I4::from_f64_cast(-7.9), I4(-7));
    }

    #[test]
    fn packing() {
        // Expected bytes from onnx.numpy_helper._pack_4bitx2 / _pack_2bitx4.
        let nibbles: Vec<u8> = (0..16).chain([3]).collect();
        let packed = pack_4bit(&nibbles);
        assert_eq!(packed, [16, 50, 84, 118, 152, 186, 220, 254, 3]);
        assert_eq!(unpack_4bit(&packed, 17), nibbles);
        assert_eq!(unpack_4bit(&packed, 16), nibbles[..16]);
        let i4 = [-8i8, 7, -1, 0, 5].map(|v| I4(v).to_bits());
        assert_eq!(pack_4bit(&i4), [120, 15, 5]);
        assert_eq!(
            unpack_4bit(&[120, 15, 5], 5)
                .into_iter()
                .map(sign_extend_4)
                .collect::<Vec<_>>(),
            [-8, 7, -1, 0, 5]
        );

        let twos = [0u8, 1, 2, 3, 3, 2, 1];
        assert_eq!(pack_2bit(&twos), [228, 27]);
        assert_eq!(unpack_2bit(&[228, 27], 7), twos);
        let i2 = [-2i8, 1, -1, 0, 1].map(|v| I2(v).to_bits());
        assert_eq!(pack_2bit(&i2), [54, 1]);
        assert_eq!(unpack_2bit(&[54, 1], 5), [2, 1, 3, 0, 1]);

        assert!(pack_4bit(&[]).is_empty() && unpack_4bit(&[], 0).is_empty());
        assert!(pack_2bit(&[]).is_empty() && unpack_2bit(&[], 0).is_empty());
        // Higher bits of the inputs are ignored.
        assert_eq!(pack_4bit(&[0xF1, 0xF2]), [0x21]);
        assert_eq!(pack_2bit(&[0xFD]), [1]);
    }

    #[test]
    #[should_panic(expected = "unpack_4bit")]
    fn unpack_4bit_too_short() {
        unpack_4bit(&[0], 3);
    }

    #[test]
    #[should_panic(expected = "unpack_2bit")]
    fn unpack_2bit_too_short() {
        unpack_2bit(&[0], 5);
    }

    #[test]
    fn display() {
        assert_eq!(F8E4M3FN::from_f32(0.5, true).to_string(), "0.5");
        assert_eq!(F8E4M3FN::MIN.to_string(), "-448");
        assert_eq!(F8E4M3FN::NAN.to_string(), "NaN");
        assert_eq!(F8E5M2::NEG_INFINITY.to_string(), "-inf");
        assert_eq!(F8E5M2FNUZ::MAX.to_string(), "57344");
        assert_eq!(F8E4M3FNUZ(0x01).to_string(), format!("{}", 2f32.powi(-10)));
        assert_eq!(F8E8M0::ONE.to_string(), "1");
        assert_eq!(F4E2M1(0xF).to_string(), "-6");
        assert_eq!(I4(-8).to_string(), "-8");
        assert_eq!(U4(15).to_string(), "15");
        assert_eq!(I2(-2).to_string(), "-2");
        assert_eq!(U2(3).to_string(), "3");
    }
}
