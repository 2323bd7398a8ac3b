"""A project's files in and out, no learning: create a project from images and import labels
(`project_import`), export labels (`export`), read and write DICOM-SEG (`dicom_seg`), the file names exports
write (`names`).
"""
