//! The serde `Serializer` of the ordered format (the table in the parent module's docs).

use super::{encode_variant, SerdeError, MAX_DEPTH};
use crate::codec::{encode_escaped, Codec};
use serde::ser::{self, Serialize};

type Res = std::result::Result<(), SerdeError>;

/// Writes values into a buffer it owns (taken from the caller's and handed back by `into_inner`).
pub(super) struct Encoder {
    out: Vec<u8>,
    depth: usize,
}

impl Encoder {
    /// An encoder appending to `out`.
    pub(super) fn new(out: Vec<u8>) -> Self {
        Encoder { out, depth: 0 }
    }

    /// The buffer, with everything written so far.
    pub(super) fn into_inner(self) -> Vec<u8> {
        self.out
    }

    /// One level deeper into a container; counted exactly as the decoder counts.
    fn enter(&mut self) -> Res {
        if self.depth >= MAX_DEPTH {
            return Err(SerdeError(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        self.enter()?;
        value.serialize(&mut *self)?;
        self.leave();
        Ok(())
    }

    fn compound(&mut self, tagged: bool) -> Result<Compound<'_>, SerdeError> {
        self.enter()?;
        Ok(Compound { enc: self, tagged })
    }
}

/// A container being written: sequences and maps (`tagged`) put `01` before each element and `00` after
/// the last; tuples and structs write their fields back to back.
pub(super) struct Compound<'a> {
    enc: &'a mut Encoder,
    tagged: bool,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        if self.tagged {
            self.enc.out.push(1);
        }
        value.serialize(&mut *self.enc)
    }

    fn finish(self) -> Res {
        if self.tagged {
            self.enc.out.push(0);
        }
        self.enc.leave();
        Ok(())
    }
}

macro_rules! via_codec {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Res {
            v.encode(&mut self.out);
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = SerdeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    via_codec!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64, serialize_char: char
    );

    fn serialize_str(self, v: &str) -> Res {
        encode_escaped(v.as_bytes(), &mut self.out);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Res {
        encode_escaped(v, &mut self.out);
        Ok(())
    }

    fn serialize_none(self) -> Res {
        self.out.push(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res {
        self.out.push(1);
        self.nested(value)
    }

    fn serialize_unit(self) -> Res {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        Ok(())
    }

    fn serialize_unit_variant(self, _name: &'static str, index: u32, _variant: &'static str) -> Res {
        // The decoder enters one level for every enum, payload or not.
        self.enter()?;
        self.leave();
        encode_variant(index, &mut self.out);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Res {
        self.nested(value)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Res {
        encode_variant(index, &mut self.out);
        self.nested(value)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, SerdeError> {
        self.compound(true)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, SerdeError> {
        self.compound(false)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, SerdeError> {
        self.compound(false)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, SerdeError> {
        encode_variant(index, &mut self.out);
        self.compound(false)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, SerdeError> {
        self.compound(true)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, SerdeError> {
        self.compound(false)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, SerdeError> {
        encode_variant(index, &mut self.out);
        self.compound(false)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Sequences, tuples, tuple structs and tuple variants: each element in order, then the end.
macro_rules! elements_in_order {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = SerdeError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
                self.element(value)
            }
            fn end(self) -> Res {
                self.finish()
            }
        }
    )*};
}

elements_in_order!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = SerdeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Res {
        self.element(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

/// A field left out by `skip_serializing_if` would leave the reader one field short: refused.
fn skipped(key: &'static str) -> Res {
    Err(SerdeError(format!(
        "field `{key}` skipped (skip_serializing_if): the ordered format has no field names, so every \
         field must be written"
    )))
}

/// Structs and struct variants: each field in order (names are not written), then the end.
macro_rules! fields_in_order {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = SerdeError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, _key: &'static str, value: &T) -> Res {
                self.element(value)
            }
            fn skip_field(&mut self, key: &'static str) -> Res {
                skipped(key)
            }
            fn end(self) -> Res {
                self.finish()
            }
        }
    )*};
}

fields_in_order!(SerializeStruct, SerializeStructVariant);
