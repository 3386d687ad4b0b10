//! The serde `Deserializer` of the ordered format. Not self-describing: every value is read as the type
//! asks, and every read checks the bytes are there and canonical.

use super::{decode_variant, SerdeError, MAX_DEPTH};
use crate::codec::{decode_bool, decode_escaped, decode_escaped_str, take, Codec};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

type Res<T> = std::result::Result<T, SerdeError>;

/// Reads values off the front of `input`.
pub(super) struct Decoder<'a> {
    input: &'a [u8],
    depth: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `input`.
    pub(super) fn new(input: &'a [u8]) -> Self {
        Decoder { input, depth: 0 }
    }

    /// The bytes not read yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.input
    }

    fn byte(&mut self, what: &str) -> Res<u8> {
        Ok(take(&mut self.input, 1, what)?[0])
    }

    /// Runs `f` one container level deeper, failing past [`MAX_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        if self.depth >= MAX_DEPTH {
            return Err(SerdeError(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// Runs `visit` over a sequence or map of tagged elements and checks it read up to the terminator.
    fn tagged<T>(&mut self, visit: impl FnOnce(&mut Tagged<'_, 'a>) -> Res<T>) -> Res<T> {
        self.nested(|de| {
            let mut access = Tagged { de, done: false };
            let value = visit(&mut access)?;
            if !access.done {
                return Err(SerdeError("sequence not read to its end".into()));
            }
            Ok(value)
        })
    }

    /// Runs `visit` over `len` untagged fields, one level deeper, and checks it read them all.
    fn fixed<T>(&mut self, len: usize, visit: impl FnOnce(&mut Fixed<'_, 'a>) -> Res<T>) -> Res<T> {
        self.nested(|de| de.fields(len, visit))
    }

    /// [`Decoder::fixed`] at this level: the payload of an enum variant, whose level the enum counted.
    fn fields<T>(&mut self, len: usize, visit: impl FnOnce(&mut Fixed<'_, 'a>) -> Res<T>) -> Res<T> {
        let mut access = Fixed { de: self, left: len };
        let value = visit(&mut access)?;
        if access.left != 0 {
            return Err(SerdeError(format!("{} fields not read", access.left)));
        }
        Ok(value)
    }
}

fn not_self_describing(what: &str) -> SerdeError {
    SerdeError(format!(
        "the ordered serde format is not self-describing: {what} is not supported (it is what \
         #[serde(flatten)], untagged and internally tagged enums ask for)"
    ))
}

macro_rules! via_codec {
    ($($method:ident => $visit:ident: $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
            visitor.$visit(<$t>::decode_from(&mut self.input)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = SerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(not_self_describing("deserialize_any"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let b = self.byte("bool")?;
        visitor.visit_bool(decode_bool(b)?)
    }

    via_codec!(
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16, deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64, deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16, deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64, deserialize_u128 => visit_u128: u128,
        deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
        deserialize_char => visit_char: char
    );

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_string(decode_escaped_str(&mut self.input)?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_string(decode_escaped_str(&mut self.input)?)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_byte_buf(decode_escaped(&mut self.input)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_byte_buf(decode_escaped(&mut self.input)?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.byte("option tag")? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            b => Err(SerdeError(format!("option tag {b}"))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Res<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Res<V::Value> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.tagged(|access| visitor.visit_seq(access))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Res<V::Value> {
        self.fixed(len, |access| visitor.visit_seq(access))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Res<V::Value> {
        self.fixed(len, |access| visitor.visit_seq(access))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.tagged(|access| visitor.visit_map(access))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        self.fixed(fields.len(), |access| visitor.visit_seq(access))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(not_self_describing("deserialize_identifier"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(not_self_describing("deserialize_ignored_any"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence or the entries of a map: each behind `01`, closed by `00`.
struct Tagged<'d, 'de> {
    de: &'d mut Decoder<'de>,
    done: bool,
}

impl<'de> Tagged<'_, 'de> {
    /// Whether another element follows (reading its tag).
    fn more(&mut self) -> Res<bool> {
        if self.done {
            return Ok(false);
        }
        match self.de.byte("sequence tag")? {
            0 => {
                self.done = true;
                Ok(false)
            }
            1 => Ok(true),
            b => Err(SerdeError(format!("sequence tag {b}"))),
        }
    }
}

impl<'de> de::SeqAccess<'de> for Tagged<'_, 'de> {
    type Error = SerdeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for Tagged<'_, 'de> {
    type Error = SerdeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

/// The fields of a tuple or struct: `left` more values back to back.
struct Fixed<'d, 'de> {
    de: &'d mut Decoder<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Fixed<'_, 'de> {
    type Error = SerdeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = SerdeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Res<(V::Value, Self)> {
        let index = decode_variant(&mut self.input)?;
        let value = seed.deserialize(IntoDeserializer::<SerdeError>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = SerdeError;
    fn unit_variant(self) -> Res<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Res<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Res<V::Value> {
        self.fields(len, |access| visitor.visit_seq(access))
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Res<V::Value> {
        self.fields(fields.len(), |access| visitor.visit_seq(access))
    }
}
