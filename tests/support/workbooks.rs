//! Workbooks written byte by byte, as a hostile tool could write them.

use std::io::Write;

/// An XLS (BIFF8 in an OLE compound file) whose one sheet holds `records` (type, data),
/// listed `listings` times in the workbook (as a hostile file may).
pub fn xls(path: &std::path::Path, records: &[(u16, Vec<u8>)], listings: usize) {
    fn record(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
        out.extend(typ.to_le_bytes());
        out.extend((data.len() as u16).to_le_bytes());
        out.extend(data);
    }
    let bof = |dt: u16| [&0x0600u16.to_le_bytes()[..], &dt.to_le_bytes(), &[0; 12]].concat();
    let name = b"People";
    let sheet_at = 20 + listings * (12 + name.len()) + 4;
    let mut stream = Vec::new();
    record(&mut stream, 0x0809, &bof(0x0005));
    for _ in 0..listings {
        let mut data = (sheet_at as u32).to_le_bytes().to_vec();
        data.extend([0, 0, name.len() as u8, 0]);
        data.extend(name);
        record(&mut stream, 0x0085, &data);
    }
    record(&mut stream, 0x000A, &[]);
    assert_eq!(stream.len(), sheet_at);
    record(&mut stream, 0x0809, &bof(0x0010));
    for (typ, data) in records {
        record(&mut stream, *typ, data);
    }
    record(&mut stream, 0x000A, &[]);
    let mut file = cfb::create(path).unwrap();
    file.create_stream("/Workbook")
        .unwrap()
        .write_all(&stream)
        .unwrap();
    file.flush().unwrap();
}

/// A cell record's start: its row, column and (default) format.
pub fn xls_cell(row: u16, col: u16) -> Vec<u8> {
    [row.to_le_bytes(), col.to_le_bytes(), [0, 0]].concat()
}

/// An ODS workbook whose `content.xml` holds `tables` (raw XML inside
/// `office:spreadsheet`), with the mimetype and manifest a spreadsheet program writes.
pub fn ods(path: &std::path::Path, tables: &[u8]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default();
    let stored = deflated.compression_method(zip::CompressionMethod::Stored);
    zip.start_file("mimetype", stored).unwrap();
    zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
        .unwrap();
    zip.start_file("META-INF/manifest.xml", deflated).unwrap();
    zip.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#)
        .unwrap();
    zip.start_file("content.xml", deflated).unwrap();
    zip.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>"#)
        .unwrap();
    zip.write_all(tables).unwrap();
    zip.write_all(b"</office:spreadsheet></office:body></office:document-content>")
        .unwrap();
    zip.finish().unwrap();
}
