#!/usr/bin/env python3
"""Write test-vectors.toml: byte-exact examples of the camera USB interface and the
controller serial protocol, built from the specifications (camera-usb.md,
controller-serial.md) with the standard library only, independently of lumiq."""
import struct, zlib
def hx(b): 
    s=b.hex()
    return ' '.join(s[i:i+8] for i in range(0,len(s),8))
PREFIX=0x43563355
def cmd(flags, cid, scd, rid): return struct.pack('<IHHHH',PREFIX,flags,cid,len(scd),rid)+scd
def ack(status, aid, scd, rid): return struct.pack('<IHHHH',PREFIX,status,aid,len(scd),rid)+scd
out=[]
out.append('schema = "lumiq.firmware-test-vectors"\nschema_version = 1\n')
out.append('# Byte-exact examples of both interfaces, generated independently of lumiq\'s codecs\n# (a Python script following the specifications); tests/camera_protocol.rs checks that\n# lumiq decodes each to the listed fields and encodes the fields back to the same bytes.\n# Hex is the bytes in wire order, grouped by four for reading.\n')
def c(name, kind, b, **kw):
    s=f'\n[[control]]\nname = "{name}"\nkind = "{kind}"\nhex = "{hx(b)}"\n'
    for k,v in kw.items():
        s+=f'{k} = {v}\n'
    out.append(s)
# READMEM SensorTemperature
c("READMEM SensorTemperature (0x0208), 4 bytes, request 1","command",
  cmd(0x4000,0x0800,struct.pack('<QHH',0x208,0,4),1), request_id=1, id="0x0800", address="0x0208", length=4)
c("READMEM_ACK: -89.91 degC (-8991 cdegC)","ack", ack(0,0x0801,struct.pack('<i',-8991),1), request_id=1, id="0x0801", status=0, data='"%s"' % struct.pack('<i',-8991).hex())
c("WRITEMEM Binning (0x0104) = 8, request 2","command", cmd(0x4000,0x0802,struct.pack('<QI',0x104,8),2), request_id=2, id="0x0802", address="0x0104", data='"08000000"')
c("PENDING_ACK: Binning needs up to 50 ms","ack", ack(0,0x0805,struct.pack('<HH',0,50),2), request_id=2, id="0x0805", status=0, timeout_ms=50)
c("WRITEMEM_ACK: 4 bytes written","ack", ack(0,0x0803,struct.pack('<HH',0,4),2), request_id=2, id="0x0803", status=0, length_written=4)
c("WRITEMEM_ACK refused: SensorTemperature is read-only (WRITE_PROTECT)","ack", ack(0x8004,0x0803,b'',3), request_id=3, id="0x0803", status="0x8004")
c("WRITEMEM_ACK refused: AcquisitionStart while busy (BUSY)","ack", ack(0x8007,0x0803,b'',9), request_id=9, id="0x0803", status="0x8007")
# stream: a 4x2 block
w,h=4,2
px=[500,501,502,503,65535,0,1000,2000]
payload=b''.join(struct.pack('<H',p) for p in px)
leader=struct.pack('<IHHQHHQIIIIIHBBQQhH',0x4C563355,0,72,7,0,1,123456789000,0x01100007,w,h,0,0,0,8,8,len(payload),60000000,-9000,3)
assert len(leader)==72
crc=zlib.crc32(payload)
trailer=struct.pack('<IHHQHHQIII',0x54563355,0,40,7,0,0,len(payload),h,crc,0)
assert len(trailer)==40
def s(name, kind, b, **kw):
    st=f'\n[[stream]]\nname = "{name}"\nkind = "{kind}"\nhex = "{hx(b)}"\n'
    for k,v in kw.items(): st+=f'{k} = {v}\n'
    out.append(st)
s("leader of block 7: 4 x 2 Mono16 at binning 8, 60 s, -90.00 degC, shutter open, locked","leader",leader,
  block_id=7, timestamp_ns=123456789000, pixel_format="0x01100007", width=4, height=2, binning=8, payload_size=16, exposure_us=60000000, sensor_temp_cc=-9000, flags=3)
s("payload of block 7 (one transfer)","payload",payload, pixels=str(px))
s("trailer of block 7: success, 16 valid bytes","trailer",trailer, block_id=7, status=0, valid_payload_size=16, height=2, payload_crc32=hex(crc))
bad=struct.pack('<IHHQHHQIII',0x54563355,0,40,7,0xA101,0,len(payload),h,crc,0)
s("trailer of block 7 with status DATA_DISCARDED (the frame must be dropped)","trailer",bad, block_id=7, status="0xA101", valid_payload_size=16, height=2, payload_crc32=hex(crc))
short=struct.pack('<IHHQHHQIII',0x54563355,0,40,7,0,0,8,h,zlib.crc32(payload[:8]),0)
s("trailer of block 7 after 8 of 16 bytes (truncated payload: the frame must be dropped)","trailer",short, block_id=7, status=0, valid_payload_size=8, height=2, payload_crc32=hex(zlib.crc32(payload[:8])))
# serial
def crc16(b):
    c=0xFFFF
    for x in b:
        c^=x<<8
        for _ in range(8):
            c=((c<<1)^0x1021)&0xFFFF if c&0x8000 else (c<<1)&0xFFFF
    return c
assert crc16(b"123456789")==0x29B1
def line(body):
    return body+'*%04X'%crc16(body.encode())
def sl(name, body, kind, seq, fields):
    out.append(f'\n[[serial]]\nname = "{name}"\nline = "{line(body)}"\nkind = "{kind}"\nseq = {seq}\nfields = {fields}\n'.replace("'",'"'))
sl("host asks for the door state","$1,DOOR?","command",1,["DOOR?"])
sl("reply: door closed and locked","=1,DOOR,CLOSED,LOCKED","reply",1,["DOOR","CLOSED","LOCKED"])
sl("host engages the door lock","$2,LOCK,ON","command",2,["LOCK","ON"])
sl("error reply: the door is open (interlock)","!2,E20,DOOR OPEN","error",2,["E20","DOOR OPEN"])
sl("host sets the photograph LED to 40 %","$12,LED,40","command",12,["LED","40"])
sl("reply: LED at 40 %","=12,LED,40","reply",12,["LED","40"])
sl("host moves the stage to shelf D","$13,SHELF,D","command",13,["SHELF","D"])
sl("reply: shelf D, field of view 22.4 cm","=13,SHELF,D,22.4","reply",13,["SHELF","D","22.4"])
sl("host turns the filter wheel to position 0","$14,FILTER,0","command",14,["FILTER","0"])
sl("reply: filter 0 is open","=14,FILTER,0,open","reply",14,["FILTER","0","open"])
sl("host sets the heated stage to 37 degC","$15,STAGE,37.0","command",15,["STAGE","37.0"])
sl("reply: stage setpoint 37.0, at 36.2 degC","=15,STAGE,37.0,36.2","reply",15,["STAGE","37.0","36.2"])
sl("host asks for the identity","$16,ID?","command",16,["ID?"])
sl("reply: identity","=16,ID,lumiq-sim-controller,SIMC-0001,2.1.0","reply",16,["ID","lumiq-sim-controller","SIMC-0001","2.1.0"])
sl("event 7: the door was opened","@7,DOOR,OPEN","event",7,["DOOR","OPEN"])
sl("event 8: the door was closed","@8,DOOR,CLOSED","event",8,["DOOR","CLOSED"])
sl("event 9: the start button was pressed","@9,BUTTON,START","event",9,["BUTTON","START"])
sl("event 0: the controller booted","@0,RESET,2.1.0","event",0,["RESET","2.1.0"])
sl("error reply to an unreadable line (sequence unknown)","!0,E01,BAD CHECKSUM","error",0,["E01","BAD CHECKSUM"])
sl("error reply: unknown command","!17,E02,UNKNOWN COMMAND","error",17,["E02","UNKNOWN COMMAND"])
import os; open(os.path.join(os.path.dirname(os.path.abspath(__file__)),'test-vectors.toml'),'w').write(''.join(out))
