// TEMPORARY placeholder so the workspace compiles; helper-2 overwrites this whole file.
macro_rules! newtype { ($($n:ident($t:ty)),*) => { $(
    #[repr(transparent)] #[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)] pub struct $n(pub $t);
)* } }
newtype!(F8E4M3FN(u8), F8E4M3FNUZ(u8), F8E5M2(u8), F8E5M2FNUZ(u8), F8E8M0(u8), F4E2M1(u8), I4(i8), U4(u8), I2(i8), U2(u8));
pub fn unpack_4bit(bytes: &[u8], count: usize) -> Vec<u8> { (0..count).map(|i| (bytes[i / 2] >> (4 * (i % 2))) & 0xF).collect() }
pub fn pack_4bit(n: &[u8]) -> Vec<u8> { n.chunks(2).map(|c| c[0] & 0xF | c.get(1).map_or(0, |x| (x & 0xF) << 4)).collect() }
pub fn unpack_2bit(bytes: &[u8], count: usize) -> Vec<u8> { (0..count).map(|i| (bytes[i / 4] >> (2 * (i % 4))) & 0x3).collect() }
pub fn pack_2bit(n: &[u8]) -> Vec<u8> { n.chunks(4).map(|c| c.iter().enumerate().fold(0, |a, (i, x)| a | (x & 3) << (2 * i))).collect() }
pub fn sign_extend_4(n: u8) -> i8 { ((n << 4) as i8) >> 4 }
pub fn sign_extend_2(n: u8) -> i8 { ((n << 6) as i8) >> 6 }
