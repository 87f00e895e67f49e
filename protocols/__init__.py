# The contract between firmware and edge: topic scheme, sensor catalog, payload codec.
# SPEC.md beside this file is the normative text. Every module here is plain Python that
# runs unchanged on CPython and on MicroPython (the firmware imports it as is), so: no
# typing, no dataclasses, no f-strings, and nothing imported here eagerly.
