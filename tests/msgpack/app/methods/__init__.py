"""Methods of the msgpack extension-type tests. Importing the package enables extension
type 1 for ``decimal.Decimal``, the way an application enables its own types."""

from decimal import Decimal

from toto_msgpack import register_ext_type

DECIMAL_EXT = 1

register_ext_type(DECIMAL_EXT, Decimal, lambda d: str(d).encode("ascii"), lambda data: Decimal(data.decode("ascii")))
