; Parley's Windows installer: a per-user install (no administrator rights) of the PyInstaller
; folder, with Start-menu and optional desktop shortcuts and an uninstaller that keeps the user's
; conversations and settings.
;
;   makensis -DPAYLOAD=<folder with parley.exe> -DVERSION=0.1.0 -DICON=<parley.ico>
;            -DOUTFILE=<setup.exe> parley.nsi
;
; Silent use: setup.exe /S [/DESKTOP] [/D=<folder>]   and   Uninstall.exe /S
; The language model goes in uncompressed: it does not shrink, and compressing it would only
; slow the build down (NSIS installers must stay under 2 GB).

Unicode true
Target amd64-unicode
ManifestDPIAware true
RequestExecutionLevel user

!ifndef PAYLOAD
  !error "Pass -DPAYLOAD=<folder holding parley.exe>"
!endif
!ifndef VERSION
  !error "Pass -DVERSION=<version>"
!endif
!ifndef ICON
  !error "Pass -DICON=<parley.ico> (packaging/make_icons.py makes it)"
!endif
!ifndef OUTFILE
  !define OUTFILE "Parley-${VERSION}-windows-x64-setup.exe"
!endif

!define APP "Parley"
!define PUBLISHER "Parley"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define MIC_HINT "If Parley does not hear you, Windows may be keeping the microphone from desktop apps: open Settings → Privacy & security → Microphone and turn on $\"Let desktop apps access your microphone$\"."
!define KEPT_NOTE "Your conversations and settings stay in $LOCALAPPDATA\${APP}. Delete that folder too if you want them gone."

!include "MUI2.nsh"
!include "FileFunc.nsh"
!include "LogicLib.nsh"
!include "Sections.nsh"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
SetCompressor lzma
BrandingText "${APP} ${VERSION}"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\parleyw.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP} now"
!define MUI_FINISHPAGE_TEXT "${APP} is installed and works offline.$\r$\n$\r$\n${MIC_HINT}"
!define MUI_UNCONFIRMPAGE_TEXT_TOP "${APP} will be removed from your computer. ${KEPT_NOTE}"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "${APP}" SecApp
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; Everything but the language model, compressed...
  File /r /x "*.gguf" "${PAYLOAD}\*"
  ; ...and the model as it is.
  SetCompress off
  SetOutPath "$INSTDIR\_internal\engines\models"
  File "${PAYLOAD}\_internal\engines\models\*.gguf"
  SetCompress auto
  SetOutPath "$INSTDIR"

  WriteUninstaller "$INSTDIR\Uninstall.exe"
  CreateShortCut "$SMPROGRAMS\${APP}.lnk" "$INSTDIR\parleyw.exe" "" "$INSTDIR\parleyw.exe" 0

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\parleyw.exe"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" $0
SectionEnd

Section /o "Desktop shortcut" SecDesktop
  CreateShortCut "$DESKTOP\${APP}.lnk" "$INSTDIR\parleyw.exe" "" "$INSTDIR\parleyw.exe" 0
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecApp} "${APP}, its offline voices and models."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecDesktop} "A shortcut on the desktop."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Function .onInit
  ; /DESKTOP on the command line picks the desktop shortcut in a silent install too.
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/DESKTOP" $1
  ${IfNot} ${Errors}
    SectionSetFlags ${SecDesktop} ${SF_SELECTED}
  ${EndIf}
FunctionEnd

Section "Uninstall"
  ; Only what the installer put there: never a recursive delete of a folder the user chose.
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\parley.exe"
  Delete "$INSTDIR\parleyw.exe"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  RMDir "$LOCALAPPDATA\Programs" ; only if the install made it and nothing else uses it
  Delete "$SMPROGRAMS\${APP}.lnk"
  Delete "$DESKTOP\${APP}.lnk"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
  ; Rebuildable files go; conversations and settings stay.
  RMDir /r "$LOCALAPPDATA\${APP}\Cache"
  RMDir /r "$LOCALAPPDATA\${APP}\Logs"
  RMDir "$LOCALAPPDATA\${APP}"
  DetailPrint "${KEPT_NOTE}"
  IfSilent +2
    MessageBox MB_OK|MB_ICONINFORMATION "${APP} was removed. ${KEPT_NOTE}"
SectionEnd
